"""The audit log page: filtered, newest first."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import QuerySet

from apps.audit.models import AuditEntry


@dataclass
class AuditQuery:
    actor: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    since: date | None = None
    until: date | None = None
    # Dates are days in the viewer's time zone.
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))


def audit_search(query: AuditQuery) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.order_by("-at", "-id")
    if query.actor:
        entries = entries.filter(actor_label__icontains=query.actor)
    if query.action:
        entries = entries.filter(action=query.action)
    if query.object_type:
        entries = entries.filter(object_type=query.object_type)
    if query.object_id:
        entries = entries.filter(object_id=query.object_id)
    if query.since:
        entries = entries.filter(at__gte=datetime.combine(query.since, time.min, tzinfo=query.tz))
    if query.until:
        entries = entries.filter(at__lt=datetime.combine(query.until + timedelta(days=1), time.min, tzinfo=query.tz))
    return entries


def audit_filter_choices() -> dict[str, list[str]]:
    """The actions and object types present, for the filter selects (both columns are indexed)."""
    distinct = AuditEntry.objects.order_by()
    return {
        "actions": sorted(distinct.values_list("action", flat=True).distinct()),
        "object_types": sorted(distinct.values_list("object_type", flat=True).distinct()),
    }
