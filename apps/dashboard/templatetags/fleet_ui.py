"""Small template helpers for the dashboard pages."""

from django import template

register = template.Library()

HEAT_LEVELS = 5


@register.filter
def heat_level(count: int, maximum: int) -> int:
    """0 for an empty cell, else 1..5 by share of the busiest cell (the number is always shown too)."""
    if not count or not maximum:
        return 0
    return max(1, min(HEAT_LEVELS, -(-count * HEAT_LEVELS // maximum)))


@register.simple_tag
def heatmap_rows(heatmap: dict) -> list[tuple[str, list[int]]]:
    return list(zip(heatmap["rows"], heatmap["cells"], strict=True))


@register.filter
def pct(value: float) -> str:
    """A share for a CSS width: always a dot decimal, whatever the locale."""
    return f"{float(value):.2f}"


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (pagers keep the filters)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()
