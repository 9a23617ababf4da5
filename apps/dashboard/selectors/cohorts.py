"""Cohorts for the cohort pages: device counts, and the editor's live preview."""

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Q

from apps.fleet.cohort_query import FilterError, compile_filter
from apps.fleet.models import Cohort, Device

PREVIEW_SAMPLE = 10


@dataclass
class CohortPreview:
    ok: bool
    count: int = 0
    sample: list[str] = field(default_factory=list)
    error: str = ""
    position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cohort_preview(filter_text: str) -> CohortPreview:
    """How many devices a filter selects and the first few ids, or the parse error and its position."""
    try:
        condition = compile_filter(filter_text)
    except FilterError as exc:
        return CohortPreview(ok=False, error=exc.message, position=exc.position)
    devices = Device.objects.filter(condition)
    return CohortPreview(
        ok=True,
        count=devices.count(),
        sample=list(devices.order_by("uid").values_list("uid", flat=True)[:PREVIEW_SAMPLE]),
    )


def cohort_list() -> list[Cohort]:
    """Every cohort with `device_count` (None when its filter no longer compiles): two queries in all."""
    cohorts = list(Cohort.objects.annotate(member_count=Count("members")).order_by("name"))
    conditions: dict[str, Q] = {}
    for cohort in cohorts:
        cohort.device_count = cohort.member_count if cohort.kind == Cohort.Kind.EXPLICIT else None
        cohort.filter_error = ""
        if cohort.kind == Cohort.Kind.FILTER:
            try:
                conditions[f"c{cohort.pk}"] = compile_filter(cohort.filter_text)
            except FilterError as exc:
                cohort.filter_error = str(exc)
    if conditions:
        # One pass over the devices counts every filter cohort at once.
        counts = Device.objects.aggregate(**{key: Count("pk", filter=q) for key, q in conditions.items()})
        for cohort in cohorts:
            if f"c{cohort.pk}" in counts:
                cohort.device_count = counts[f"c{cohort.pk}"]
    return cohorts
