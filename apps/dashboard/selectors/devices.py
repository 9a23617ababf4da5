"""Device search: free text, `name:value` attributes, `component=version`, or a cohort filter."""

import re
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from apps.fleet.cohort_query import FilterError, compile_filter
from apps.fleet.models import Device

# Anything that only the cohort filter language uses sends the whole query to its parser.
FILTER_SYNTAX = re.compile(r"==|!=|<|>|~|[()]|\b(?:tag|has):|\s(?:and|or)\s|^not\s|\bin\s*\(")
# `name:value` (attribute, or hw:/id:) and `name=value` (installed version of a component).
TERM = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_-]{0,63}|version\.[A-Za-z_][A-Za-z0-9_-]{0,63})(?P<op>[:=])(?P<value>.+)$"
)
COLUMN_TERMS = {"id": "uid", "hw": "hw_model", "hw_model": "hw_model"}


@dataclass
class DeviceQuery:
    """A parsed search: `mode` is "all", "terms" or "filter"; `error` is a FilterError for a bad filter."""

    text: str
    mode: str = "all"
    terms: list[str] = field(default_factory=list)
    error: FilterError | None = None


def _json_value_q(lookup: str, value: str) -> Q:
    # Attribute values are JSON: "4" could mean the string or the number a device sent.
    q = Q(**{lookup: value})
    if re.fullmatch(r"-?\d{1,18}", value):
        q |= Q(**{lookup: int(value)})
    elif value in ("true", "false"):
        q |= Q(**{lookup: value == "true"})
    return q


def _term_q(term: str) -> Q:
    match = TERM.match(term)
    if match is None or "__" in match["name"] or match["name"].endswith("_"):
        return Q(uid__icontains=term) | Q(hw_model__icontains=term)
    name, op, value = match["name"], match["op"], match["value"]
    if name.startswith("version."):
        name, op = name.removeprefix("version."), "="
    if op == ":" and name in COLUMN_TERMS:
        return Q(**{f"{COLUMN_TERMS[name]}__icontains": value})
    if op == "=":
        return Q(**{f"installed__{name}": value})
    return _json_value_q(f"attributes__{name}", value)


def device_search(text: str = "") -> tuple[QuerySet[Device], DeviceQuery]:
    """Devices matching the search, and how it was read (an invalid filter matches nothing)."""
    devices = Device.objects.select_related("combination").order_by("uid")
    query = DeviceQuery(text=text.strip())
    if not query.text:
        return devices, query
    if FILTER_SYNTAX.search(query.text):
        query.mode = "filter"
        try:
            return devices.filter(compile_filter(query.text)), query
        except FilterError as exc:
            query.error = exc
            return devices.none(), query
    query.mode = "terms"
    query.terms = query.text.split()
    condition = Q()
    for term in query.terms:
        condition &= _term_q(term)
    return devices.filter(condition), query


HISTORY_ROWS = 50
HEALTH_WINDOW_H = 24


def device_history(device: Device) -> dict:
    """The device page: latest check-ins, deployments, and health counters summed over a day."""
    from datetime import timedelta

    from django.db.models import Count, Sum
    from django.utils import timezone

    from apps.fleet.models import HealthReport

    since = timezone.now() - timedelta(hours=HEALTH_WINDOW_H)
    # Served by the (device, -received_at) index.
    recent = HealthReport.objects.filter(device=device, received_at__gte=since)
    totals = recent.aggregate(reports=Count("id"), **{name: Sum(name) for name in HealthReport.COUNTERS})
    return {
        "reports": device.health_reports.select_related("combination")[:HISTORY_ROWS],
        "deployments": device.deployments.select_related("rollout", "wave").order_by("-created_at")[:HISTORY_ROWS],
        "health": {"hours": HEALTH_WINDOW_H, **{k: v or 0 for k, v in totals.items()}},
    }
