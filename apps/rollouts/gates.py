"""Counting a rollout's deployments and deciding halts: absolute limits and error spikes.

Every count here is one grouped query over the rollout's own deployments or over health
reports in the rollout's window: never a loop over devices.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q, Sum

from apps.fleet.models import Combination, Device, HealthReport

from .models import Deployment, Rollout, Wave
from .selection import cohorts_q, wave_cohorts

log = logging.getLogger(__name__)
D = Deployment.State
# How many combinations a halt's evidence names.
MOST_AFFECTED = 3
DEFAULT_METRICS = ("crashes", "failed_health_checks")
METRIC_WORDS = {
    "crashes": "crash",
    "failed_health_checks": "failed health check",
    "reboots": "reboot",
    "app_restarts": "app restart",
}


def retry_eligible_q(rollout: Rollout) -> Q:
    """A failed deployment that will be retried (so it is not a failure for the gates yet)."""
    return Q(state=D.FAILED) & (
        Q(retry_at__isnull=False)
        | Q(error_code__in=rollout.retryable_error_codes or [], attempts__lte=rollout.max_retries)
    )


def wave_counts(rollout: Rollout) -> dict[int, dict[str, int]]:
    """Per wave id: deployments by state, plus "held" (paced), "not_seen", "silent", "retrying"."""
    since = rollout.gates_since
    retrying = retry_eligible_q(rollout)
    released_pending = Q(state=D.PENDING, released_at__isnull=False)
    unseen = Q(device__last_seen__isnull=True) | Q(device__last_seen__lt=F("released_at"))
    in_flight = Q(state__in=(D.DOWNLOADING, D.INSTALLING, D.SETTLING))
    recent_final = Q(finished_at__gte=since) if since else Q()
    recent_release = Q(released_at__gte=since) if since else Q()
    rows = (
        Deployment.objects.filter(rollout=rollout)
        .values("wave_id")
        .annotate(
            n_total=Count("id"),
            n_held=Count("id", filter=Q(state=D.PENDING, released_at__isnull=True)),
            n_pending=Count("id", filter=released_pending & ~unseen),
            n_not_seen=Count("id", filter=released_pending & unseen),
            n_downloading=Count("id", filter=Q(state=D.DOWNLOADING, silent=False)),
            n_installing=Count("id", filter=Q(state=D.INSTALLING, silent=False)),
            n_settling=Count("id", filter=Q(state=D.SETTLING, silent=False)),
            n_silent=Count("id", filter=in_flight & Q(silent=True)),
            n_succeeded=Count("id", filter=Q(state=D.SUCCEEDED)),
            n_failed=Count("id", filter=Q(state=D.FAILED) & ~retrying),
            n_retrying=Count("id", filter=retrying),
            n_canceled=Count("id", filter=Q(state=D.CANCELED)),
            n_rolled_back=Count("id", filter=Q(state=D.ROLLED_BACK)),
            # Only what happened since a person overrode a halt counts for the next halt.
            n_gate_succeeded=Count("id", filter=Q(state=D.SUCCEEDED) & recent_final),
            n_gate_failed=Count("id", filter=Q(state=D.FAILED) & ~retrying & recent_final),
            n_gate_silent=Count("id", filter=in_flight & Q(silent=True) & recent_release),
            n_first_failure_at=Min("finished_at", filter=Q(state=D.FAILED) & ~retrying & recent_final),
        )
    )
    # Annotation names carry a prefix: "silent" would otherwise shadow the model field in filters.
    return {row["wave_id"]: {key[2:]: value for key, value in row.items() if key.startswith("n_")} for row in rows}


@dataclass
class Halt:
    reason: str
    evidence: dict


def absolute_halt(rollout: Rollout, wave: Wave, counts: dict, now: datetime) -> Halt | None:
    """Failed installs above N, or above X% of the devices that have *reported* (not of the wave)."""
    from .stats import absolute_failure_check

    if wave.max_failed_count is None and wave.max_failed_percent is None:
        return None
    silent = counts.get("gate_silent", 0) if rollout.silent_counts_as_failure else 0
    failed = counts.get("gate_failed", 0) + silent
    reported = counts.get("gate_succeeded", 0) + failed
    halt, message = absolute_failure_check(
        failed, reported, max_failed_count=wave.max_failed_count, max_failed_percent=wave.max_failed_percent
    )
    if not halt:
        return None
    first = counts.get("first_failure_at")
    combinations = _named(lambda: failing_install_combinations(rollout, wave))
    return Halt(
        reason=f"Wave {wave.index + 1}: {message}{_most_affected_words(combinations)}",
        evidence={
            "combinations": combinations,
            "gate": "absolute",
            "wave": wave.index,
            "failed": failed,
            "silent_counted_as_failed": silent,
            "reported": reported,
            "max_failed_count": wave.max_failed_count,
            "max_failed_percent": wave.max_failed_percent,
            "first_failing_report_at": first.isoformat() if first else None,
            "evaluated_at": now.isoformat(),
            "summary": message,
        },
    )


def spike_settings(wave: Wave) -> dict | None:
    gate = dict(wave.spike_gate or {})
    if gate.get("enabled") is False:
        return None
    gate.setdefault("metrics", list(DEFAULT_METRICS))
    return gate


def updated_reports(rollout: Rollout) -> "HealthReport.objects":
    """Reports sent by this rollout's devices after they installed (A/B fallbacks excluded)."""
    installed = Deployment.objects.filter(
        rollout=rollout, installed_at__isnull=False, device_id=OuterRef("device_id"),
        installed_at__lt=OuterRef("received_at"),
    ).exclude(error_code="fallback")
    return HealthReport.objects.filter(Exists(installed))


def baseline_reports(rollout: Rollout, waves: list[Wave]) -> "HealthReport.objects":
    """Reports of devices in the started waves' cohorts that still run the old release."""
    cohorts = []
    for wave in waves:
        cohorts.extend(c for c in wave_cohorts(rollout, wave) if c not in cohorts)
    on_target = Q(pk__in=[])
    for target in rollout.targets.select_related("component", "release"):
        on_target |= Q(**{f"installed__{target.component.name}": target.release.version})
    updated = Deployment.objects.filter(rollout=rollout, installed_at__isnull=False).values("device_id")
    # Correlated on the report's device, not `device_id IN (cohort)`: the latter made PostgreSQL
    # evaluate the cohort filter over the whole fleet (3-11 s per tick at 1M devices, see
    # docs/performance.md); this way only the devices that reported in the gate window are
    # checked, one primary-key probe each, and the reports' time index bounds the work.
    device = Device.objects.filter(pk=OuterRef("device_id")).filter(cohorts_q(cohorts)).exclude(
        pk__in=updated
    ).exclude(pk__in=Device.objects.filter(on_target, pk=OuterRef(OuterRef("device_id"))).values("pk"))
    return HealthReport.objects.filter(Exists(device))


def _aggregate(reports, metrics: list[str], start: datetime) -> dict:
    aggregates = {"exposure_s": Sum("interval_s"), "devices": Count("device_id", distinct=True)}
    for metric in metrics:
        aggregates[f"{metric}__events"] = Sum(metric)
        aggregates[f"{metric}__affected"] = Count("device_id", distinct=True, filter=Q(**{f"{metric}__gt": 0}))
        aggregates[f"{metric}__first"] = Min("received_at", filter=Q(**{f"{metric}__gt": 0}))
    return reports.filter(received_at__gte=start).aggregate(**aggregates)


def spike_halt(rollout: Rollout, wave: Wave, started: list[Wave], now: datetime) -> tuple[Halt | None, list[dict]]:
    """Compare updated devices with the baseline, one aggregate query each (all metrics at once)."""
    from .stats import RateSample, poisson_spike_test

    gate = spike_settings(wave)
    if gate is None:
        return None, []
    first_install = Deployment.objects.filter(rollout=rollout, installed_at__isnull=False).aggregate(
        at=Min("installed_at"))["at"]
    if first_install is None:
        return None, []
    start = max(first_install, rollout.gates_since) if rollout.gates_since else first_install
    metrics = list(gate["metrics"])
    updated = _aggregate(updated_reports(rollout), metrics, start)
    baseline = _aggregate(baseline_reports(rollout, started), metrics, start)
    options = {key: gate[key] for key in ("alpha", "min_devices", "min_exposure_h", "min_ratio", "min_events")
               if key in gate}
    decisions = []
    for metric in metrics:
        decision = poisson_spike_test(
            RateSample(updated[f"{metric}__events"] or 0, (updated["exposure_s"] or 0) / 3600,
                       updated["devices"] or 0, updated[f"{metric}__affected"] or 0),
            RateSample(baseline[f"{metric}__events"] or 0, (baseline["exposure_s"] or 0) / 3600,
                       baseline["devices"] or 0, baseline[f"{metric}__affected"] or 0),
            metric=metric,
            **options,
        )
        evidence = {
            **decision.as_evidence(),
            "gate": "spike",
            "wave": wave.index,
            "window_start": start.isoformat(),
            "evaluated_at": now.isoformat(),
            "first_failing_report_at": (
                updated[f"{metric}__first"].isoformat() if updated[f"{metric}__first"] else None
            ),
            "settings": options,
        }
        decisions.append(evidence)
        if decision.halt:
            evidence["combinations"] = _named(lambda m=metric: spiking_combinations(rollout, m, start))
            reason = f"Wave {wave.index + 1}: {decision.summary}{_most_affected_words(evidence['combinations'])}"
            return Halt(reason=reason, evidence=evidence), decisions
    return None, decisions


# --- which combinations a halt hits hardest (evidence only: never part of the decision) ---------------


def _named(compute) -> list[dict]:
    """The evidence's "combinations"; a failure here must never cost the halt itself."""
    try:
        # A savepoint: on PostgreSQL a failed query would otherwise poison the halt's transaction.
        with transaction.atomic():
            return compute()
    except Exception:
        log.exception("could not name the combinations most affected by a halt")
        return []


def combination_label(versions: dict[str, str]) -> str:
    return " · ".join(f"{name} {versions[name]}" for name in sorted(versions)) or "(nothing installed)"


def _with_versions(rows: list[dict]) -> list[dict]:
    versions = dict(Combination.objects.filter(pk__in=[r["combination_id"] for r in rows]).values_list("pk", "versions"))
    for row in rows:
        row["versions"] = versions.get(row["combination_id"], {})
        row["label"] = combination_label(row["versions"]) if row["combination_id"] else "(unknown combination)"
    return rows


def spiking_combinations(rollout: Rollout, metric: str, start: datetime, limit: int = MOST_AFFECTED) -> list[dict]:
    """Updated devices' reports by combination: most devices affected first (one grouped query)."""
    rows = (
        updated_reports(rollout).filter(received_at__gte=start)
        .values("combination_id")
        .annotate(devices=Count("device_id", distinct=True),
                  affected=Count("device_id", distinct=True, filter=Q(**{f"{metric}__gt": 0})),
                  events=Sum(metric), exposure_s=Sum("interval_s"))
        .filter(events__gt=0)
        .order_by("-affected", "-events", "combination_id")[:limit]
    )
    found = []
    for row in rows:
        hours = (row["exposure_s"] or 0) / 3600
        found.append({
            "combination_id": row["combination_id"], "metric": metric, "devices": row["devices"],
            "failing_devices": row["affected"], "events": row["events"],
            "rate_per_device_hour": round(row["events"] / hours, 4) if hours else None,
        })
    return _with_versions(found)


def failing_install_combinations(rollout: Rollout, wave: Wave, limit: int = MOST_AFFECTED) -> list[dict]:
    """Reported deployments of the rollout by the device's combination: most failed installs first.

    A failed install leaves the device on its old versions, so its combination now is the one it failed on.
    """
    final = Q(state__in=(D.SUCCEEDED, D.FAILED))
    if rollout.gates_since:
        final &= Q(finished_at__gte=rollout.gates_since)
    failed = Q(state=D.FAILED) & ~retry_eligible_q(rollout)
    rows = (
        Deployment.objects.filter(final, rollout=rollout, wave=wave)
        .values(combination_id=F("device__combination_id"))
        .annotate(reported=Count("id"), failed=Count("id", filter=failed))
        .filter(failed__gt=0)
        .order_by("-failed", "combination_id")[:limit]
    )
    found = [
        {"combination_id": row["combination_id"], "metric": "failed_installs", "devices": row["reported"],
         "failing_devices": row["failed"], "failure_percent": round(100.0 * row["failed"] / row["reported"], 1)}
        for row in rows
    ]
    return _with_versions(found)


def _most_affected_words(combinations: list[dict]) -> str:
    if not combinations:
        return ""
    top = combinations[0]
    return f"; most affected: {top['label']} ({top['failing_devices']} of {top['devices']} devices)"
