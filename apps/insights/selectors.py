"""Reads for the insights pages: health by combination, stragglers, the spread over time and its CSV.

The heatmap reads the maintained 5-minute rollup (`CombinationHealth`), never the raw health reports:
its cost depends on the number of live combinations × buckets in the window, not on the fleet's size.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from apps.dashboard.selectors import online_cutoff
from apps.dashboard.selectors.fleet import version_sort_key
from apps.fleet.models import Combination, Component, Device, SpreadSample
from apps.rollouts.models import Deployment, Rollout, RolloutRelease
from apps.rollouts.selection import cohorts_q

from .models import CombinationHealth

WINDOWS_H = (1, 6, 24)
METRICS = {
    "crashes": "Crashes per device-hour",
    "failed_health_checks": "Failed health checks per device-hour",
    "failed_installs": "Failed installs (% of finished)",
}
# A cell's colour class is its rate over the rate of every *other* cell (so one sick pairing cannot
# hide itself by raising the fleet's average): below these ratios → class 1, 2, 3; above → 4.
LEVEL_RATIOS = (1.5, 3.0, 6.0)
# Below this much data a cell is marked "few data" and its class is capped at 2: one crash on one
# device must not paint a cell the same colour as a real spike.
MIN_EXPOSURE_H = 1.0
MIN_FINISHED_INSTALLS = 5


# --- health by combination --------------------------------------------------------------------


def heatmap_components() -> tuple[Component | None, list[Component]]:
    """The OS component (the rows) and the application components (one of them gives the columns)."""
    comps = list(Component.objects.order_by("position", "name"))
    os_component = next((c for c in comps if c.kind == Component.Kind.OS), None)
    return os_component, [c for c in comps if c is not os_component]


def _level(rate: float | None, ref: float | None, enough: bool) -> int | None:
    if rate is None:
        return None
    if rate == 0:
        return 0
    ratio = rate / ref if ref else float("inf")
    level = 1 + sum(ratio >= limit for limit in LEVEL_RATIOS)
    return level if enough else min(level, 2)


def health_heatmap(*, hours: int, app: str, metric: str = "crashes", now: datetime | None = None) -> dict[str, Any]:
    """Error rates per (OS version × `app` version) over the last `hours`, from the rollup.

    One grouped query over the rollup, one over the combinations; the folding into OS × app cells
    is in Python over (live combinations), which is small by the product's own goal.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    os_component, _ = heatmap_components()
    rows = (
        CombinationHealth.objects.filter(bucket__gte=since)
        .values("combination_id")
        .annotate(reports=Sum("reports"), exposure_s=Sum("exposure_s"), crashes=Sum("crashes"),
                  failed_health_checks=Sum("failed_health_checks"), failed_installs=Sum("failed_installs"),
                  finished_installs=Sum("finished_installs"))
    )
    sums = {row["combination_id"]: row for row in rows}
    combos = Combination.objects.filter(Q(pk__in=list(sums)) | Q(device_count__gt=0)).values_list(
        "pk", "versions", "device_count")
    os_name = os_component.name if os_component else ""
    keys = ("reports", "exposure_s", "crashes", "failed_health_checks", "failed_installs", "finished_installs")
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for pk, versions, device_count in combos:
        key = (versions.get(os_name, "—"), versions.get(app, "—"))
        cell = cells.setdefault(key, {"devices": 0, "combinations": 0, **{k: 0 for k in keys}})
        cell["devices"] += device_count
        cell["combinations"] += 1
        for k in keys:
            cell[k] += (sums.get(pk) or {}).get(k) or 0

    def events_and_base(cell) -> tuple[int, float]:
        if metric == "failed_installs":
            return cell["failed_installs"], cell["finished_installs"]
        return cell[metric], cell["exposure_s"] / 3600

    def rate_of(events, base) -> float | None:
        if not base:
            return None
        return 100.0 * events / base if metric == "failed_installs" else events / base

    total_events = sum(events_and_base(c)[0] for c in cells.values())
    total_base = sum(events_and_base(c)[1] for c in cells.values())
    for cell in cells.values():
        events, base = events_and_base(cell)
        cell["events"] = events
        cell["rate"] = rate_of(events, base)
        cell["rest_rate"] = rate_of(total_events - events, total_base - base) if total_base - base else None
        enough = base >= (MIN_FINISHED_INSTALLS if metric == "failed_installs" else MIN_EXPOSURE_H)
        cell["few_data"] = cell["rate"] is not None and not enough
        cell["level"] = _level(cell["rate"], cell["rest_rate"], enough)
        cell["exposure_h"] = round(cell["exposure_s"] / 3600, 1)
        if cell["rate"] is not None and cell["rest_rate"]:
            cell["ratio"] = round(cell["rate"] / cell["rest_rate"], 1)
        else:
            cell["ratio"] = None

    os_versions = sorted({k[0] for k in cells}, key=version_sort_key, reverse=True)
    app_versions = sorted({k[1] for k in cells}, key=version_sort_key, reverse=True)
    worst = max((k for k in cells if cells[k]["level"] is not None),
                key=lambda k: (cells[k]["level"], cells[k]["rate"] or 0), default=None)
    grid = [
        {"os": os_version,
         "cells": [{"app": app_version, "os": os_version, "worst": (os_version, app_version) == worst,
                    **cells.get((os_version, app_version), {"level": None, "devices": 0, "rate": None})}
                   for app_version in app_versions]}
        for os_version in os_versions
    ]
    return {
        "hours": hours, "metric": metric, "metric_label": METRICS[metric], "since": since, "now": now,
        "os_component": os_name, "app": app, "app_versions": app_versions, "rows": grid,
        "worst": {"os": worst[0], "app": worst[1], **_public(cells[worst])} if worst else None,
        "fleet_rate": rate_of(total_events, total_base),
    }


def _public(cell: dict) -> dict:
    return {k: cell[k] for k in ("devices", "reports", "events", "rate", "rest_rate", "ratio", "level", "few_data",
                                 "exposure_h", "failed_installs", "finished_installs") if k in cell}


def heatmap_json(heatmap: dict) -> dict:
    """The heatmap as JSON: datetimes as ISO strings, cells without the internal counters."""
    return {
        **{k: heatmap[k] for k in ("hours", "metric", "os_component", "app", "app_versions", "fleet_rate", "worst")},
        "since": heatmap["since"].isoformat(),
        "rows": [{"os": row["os"], "cells": [{"app": c["app"], **_public(c)} for c in row["cells"]]}
                 for row in heatmap["rows"]],
    }


# --- convergence: stragglers ------------------------------------------------------------------

REASONS = {
    "failing": "Failing: the last install failed",
    "offline": "Offline: not seen within the online window",
    "pending": "Pending: not reached yet",
    "excluded": "Excluded: not in the rollout's cohorts, or hardware the release does not support",
}


@dataclass
class StragglerQuery:
    rollout: Rollout
    component: str = ""
    days: int = 0
    reason: str = ""


def rollout_targets(rollout: Rollout, component: str = "") -> list[RolloutRelease]:
    targets = list(rollout.targets.select_related("component", "release").order_by("component__position"))
    return [t for t in targets if not component or t.component.name == component]


def stragglers(query: StragglerQuery) -> QuerySet:
    """Devices not on the rollout's target (one component, or any of the bundle's), with a reason each.

    One SQL query (annotations, no loop over devices): `reason`, `why` (error code or exclusion), and
    `retryable` (a follow-up rollout could fix it now: failing or left behind while offline, online
    again, in the rollout's cohorts, on supported hardware).
    """
    rollout = query.rollout
    targets = rollout_targets(rollout, query.component)
    behind = Q(pk__in=[])  # no target (an unknown component): nobody is behind, same annotated shape
    unsupported = Q(pk__in=[])
    for target in targets:
        behind |= ~Q(**{f"installed__{target.component.name}": target.release.version})
        if target.release.supported_hardware:
            unsupported |= ~Q(hw_model__in=target.release.supported_hardware)
    deployment = Deployment.objects.filter(rollout=rollout, device=OuterRef("pk"))
    cohorts = [w.cohort for w in rollout.waves.select_related("cohort") if w.cohort is not None]
    in_population = cohorts_q(cohorts) | Q(Exists(deployment))
    online = Q(last_seen__gte=online_cutoff())
    failing = Q(dep_state=Deployment.State.FAILED)
    left_behind = Q(pk__in=[])
    if rollout.state in Rollout.FINAL_STATES:
        # The rollout is over: whoever it did not finish (offline then, canceled) will not be reached.
        left_behind = ~Q(dep_state=Deployment.State.SUCCEEDED)
    devices = (
        Device.objects.filter(behind)
        .annotate(
            dep_state=Subquery(deployment.values("state")[:1]),
            dep_error=Subquery(deployment.values("error_code")[:1]),
            dep_created=Subquery(deployment.values("created_at")[:1]),
        )
        .annotate(
            reason=Case(
                When(unsupported, then=Value("excluded")),
                When(~in_population, then=Value("excluded")),
                When(failing, then=Value("failing")),
                When(~online, then=Value("offline")),
                default=Value("pending"),
                output_field=CharField(),
            ),
            why=Case(
                When(unsupported, then=Value("unsupported hardware")),
                When(~in_population, then=Value("not in the rollout's cohorts")),
                When(failing, then="dep_error"),
                default=Value(""),
                output_field=CharField(),
            ),
            retryable=Case(
                When(online & ~unsupported & in_population & (failing | left_behind), then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
    )
    if query.days:
        # Only devices the rollout has had at least N days to move: reached N days ago, or never reached.
        deadline = timezone.now() - timedelta(days=query.days)
        devices = devices.filter(Q(dep_created__isnull=True) | Q(dep_created__lte=deadline))
    if query.reason:
        devices = devices.filter(reason=query.reason)
    return devices


def straggler_summary(query: StragglerQuery) -> dict[str, Any]:
    """Counts per reason and retryable, in two grouped queries."""
    base = stragglers(StragglerQuery(rollout=query.rollout, component=query.component, days=query.days))
    counts = {row["reason"]: row["n"] for row in base.order_by().values("reason").annotate(n=Count("id"))}
    rollout = query.rollout
    age = (timezone.now() - rollout.started_at).days if rollout.started_at else None
    return {
        "counts": {reason: counts.get(reason, 0) for reason in REASONS},
        "total": sum(counts.values()),
        "retryable": base.filter(retryable=True).count(),
        "days_since_start": age,
        "targets": [{"component": t.component.name, "version": t.release.version}
                    for t in rollout_targets(rollout, query.component)],
    }


def straggler_rows(devices: QuerySet, components: list[str]) -> Iterator[dict[str, Any]]:
    for device in devices:
        yield {
            "uid": device.uid, "hw_model": device.hw_model, "last_seen": device.last_seen,
            "versions": [device.installed.get(name, "") for name in components],
            "reason": device.reason, "why": device.why, "retryable": device.retryable,
            "deployment": device.dep_state or "",
        }


# --- the spread: over time, and as CSV --------------------------------------------------------


def spread_history(*, hours: int, max_points: int = 600) -> dict[str, Any]:
    """Distinct live combinations per sample, and every rollout start/halt/finish inside the window."""
    since = timezone.now() - timedelta(hours=hours)
    samples = list(SpreadSample.objects.filter(at__gte=since).order_by("at").values_list("at", "combinations",
                                                                                          "devices"))
    if len(samples) > max_points:
        step = -(-len(samples) // max_points)
        samples = samples[::-1][::step][::-1]
    markers = []
    window = Q(started_at__gte=since) | Q(halted_at__gte=since) | Q(finished_at__gte=since)
    for r in Rollout.objects.filter(window).only("id", "name", "state", "started_at", "halted_at", "finished_at"):
        for kind, at in (("start", r.started_at), ("halt", r.halted_at), ("finish", r.finished_at)):
            if at and at >= since:
                label = "complete" if kind == "finish" and r.state == Rollout.State.COMPLETED else kind
                markers.append({"t": int(at.timestamp()), "at": at.isoformat(), "kind": label,
                                "rollout": r.pk, "name": r.name})
    markers.sort(key=lambda m: m["t"])
    return {
        "hours": hours,
        "t": [int(at.timestamp()) for at, _, _ in samples],
        "combinations": [n for _, n, _ in samples],
        "devices": [n for _, _, n in samples],
        "markers": markers,
    }


def _certified_check():
    """A test "is this version tuple certified?" from the governance app, or None when it is absent."""
    try:
        from apps.governance.patterns import is_certified
        from apps.governance.selectors import certified_patterns
    except ImportError:
        return None
    patterns = certified_patterns()  # read once per export, not per row
    return lambda versions: is_certified(patterns, versions)


def spread_csv_rows() -> Iterator[list[Any]]:
    """Header, then one row per live combination (most devices first), streamed in chunks."""
    names = list(Component.objects.order_by("position", "name").values_list("name", flat=True))
    certified = _certified_check()
    yield [*names, "devices", "first_seen", "last_seen", "key", *(["certified"] if certified else [])]
    live = Combination.objects.filter(device_count__gt=0).order_by("-device_count", "key")
    for combo in live.iterator(chunk_size=2000):
        row = [*(combo.versions.get(n, "") for n in names), combo.device_count, combo.first_seen.isoformat(),
               combo.last_seen.isoformat(), combo.key]
        if certified:
            row.append("yes" if certified(combo.versions) else "no")
        yield row


def straggler_csv_rows(query: StragglerQuery) -> Iterator[list[Any]]:
    components = [t.component.name for t in rollout_targets(query.rollout, query.component)]
    yield ["device", "hw_model", *components, "last_seen", "reason", "detail", "deployment", "retryable"]
    devices = stragglers(query).order_by("reason", "uid")
    for row in straggler_rows(devices.iterator(chunk_size=2000), components):
        yield [row["uid"], row["hw_model"], *row["versions"],
               row["last_seen"].isoformat() if row["last_seen"] else "", row["reason"], row["why"],
               row["deployment"], "yes" if row["retryable"] else "no"]

