from django import template

register = template.Library()


@register.filter
def rate(value, metric: str) -> str:
    """A heatmap rate in words: "12.5% failed" for installs, "0.42/device-h" for health counters."""
    if value is None:
        return "—"
    if metric == "failed_installs":
        return f"{value:.1f}% failed"
    return f"{value:.2f}/device-h" if value < 10 else f"{value:.1f}/device-h"
