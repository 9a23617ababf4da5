"""Reads for the rollout pages: progress per wave, the health chart, and wave previews."""

from datetime import timedelta

from django.db.models import Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from apps.fleet.models import Cohort, Device

from . import gates
from .models import Deployment, Rollout, Wave
from .selection import cohort_device_ids, wave_size

COUNT_KEYS = ("total", "held", "pending", "not_seen", "downloading", "installing", "settling", "silent",
              "succeeded", "failed", "retrying", "canceled", "rolled_back")
DONE_KEYS = ("succeeded", "failed", "canceled", "rolled_back")


def rollout_progress(rollout: Rollout) -> dict:
    """Per wave: counts by state (incl. "silent" and "not_seen"), segment coverage, projected completion.

    Two queries whatever the rollout's size: the waves, and one grouped count of deployments.
    """
    now = timezone.now()
    counts = gates.wave_counts(rollout)
    waves = []
    for wave in rollout.waves.select_related("cohort").order_by("index"):
        wave_counts = {key: counts.get(wave.pk, {}).get(key, 0) for key in COUNT_KEYS}
        waves.append(
            {
                "index": wave.index,
                "name": wave.name or f"Wave {wave.index + 1}",
                "cohort": wave.cohort.name if wave.cohort else None,
                "state": wave.state,
                "planned": wave.planned_devices,
                "counts": wave_counts,
                "segment_coverage": wave.segment_coverage,
                "started_at": wave.started_at,
                "finished_at": wave.finished_at,
                "soak_until": wave.started_at + timedelta(seconds=wave.min_soak_s) if wave.started_at else None,
            }
        )
    total = sum(w["counts"]["total"] for w in waves)
    done = sum(w["counts"][key] for w in waves for key in DONE_KEYS)
    return {
        "rollout": rollout.pk,
        "state": rollout.state,
        "current_wave": rollout.current_wave,
        "waves": waves,
        "devices": total,
        "done": done,
        "projected_completion": _projection(rollout, waves, done, now),
    }


def _projection(rollout: Rollout, waves: list[dict], done: int, now):
    """Linear: devices finished per second since the start, over what remains (pending waves estimated)."""
    if rollout.state in Rollout.FINAL_STATES:
        return rollout.finished_at
    if rollout.state != Rollout.State.RUNNING or not rollout.started_at or not done:
        return None
    remaining = sum(w["counts"]["total"] for w in waves) - done
    for wave in waves:
        if wave["state"] == Wave.State.PENDING and wave["cohort"] is not None:
            remaining += wave_preview_count(rollout, wave["index"])
    elapsed = max((now - rollout.started_at).total_seconds(), 1.0)
    return now + timedelta(seconds=remaining * elapsed / done)


def wave_preview_count(rollout: Rollout, index: int) -> int:
    wave = rollout.waves.select_related("cohort").get(index=index)
    if wave.cohort is None:
        return 0
    size = Device.objects.filter(pk__in=cohort_device_ids(wave.cohort)).count()
    return wave_size(wave.size_kind, wave.size_value, size)


def wave_preview(*, cohort: Cohort | None, size_kind: str, size_value: float, rollout_id: int | None = None) -> dict:
    """How many devices a wave would reach: of the cohort, those not yet in the rollout, the wave's share."""
    if cohort is None:
        return {"cohort_devices": None, "eligible": None, "would_select": None, "segments": None}
    devices = Device.objects.filter(pk__in=cohort_device_ids(cohort))
    cohort_size = devices.count()
    eligible = devices
    if rollout_id is not None:
        eligible = devices.exclude(pk__in=Deployment.objects.filter(rollout_id=rollout_id).values("device_id"))
    eligible_count = eligible.count() if rollout_id is not None else cohort_size
    segments = eligible.values("hw_model", "attributes__region", "combination_id").distinct().count()
    return {
        "cohort_devices": cohort_size,
        "eligible": eligible_count,
        "would_select": min(wave_size(size_kind, size_value, cohort_size), eligible_count),
        "segments": segments,
    }


def rollout_health_series(rollout: Rollout, *, metric: str = "crashes") -> list[dict]:
    """Event rate per 100 device-hours, updated devices vs baseline, per minute or hour bucket."""
    if metric not in gates.METRIC_WORDS:
        raise ValueError(f"unknown metric {metric!r}")
    start = Deployment.objects.filter(rollout=rollout, installed_at__isnull=False).order_by("installed_at").values_list(
        "installed_at", flat=True).first()
    if start is None:
        return []
    end = rollout.finished_at or timezone.now()
    trunc = TruncMinute if end - start <= timedelta(hours=3) else TruncHour
    started = list(rollout.waves.exclude(state=Wave.State.PENDING).select_related("cohort"))

    def series(reports) -> dict:
        rows = (
            reports.filter(received_at__gte=start, received_at__lte=end)
            .annotate(bucket=trunc("received_at"))
            .values("bucket")
            .annotate(events=Sum(metric), exposure=Sum("interval_s"))
        )
        return {row["bucket"]: row for row in rows}

    updated = series(gates.updated_reports(rollout))
    baseline = series(gates.baseline_reports(rollout, started))

    def rate(row) -> float | None:
        if not row or not row["exposure"]:
            return None
        return round(100.0 * (row["events"] or 0) / (row["exposure"] / 3600), 4)

    return [
        {"at": bucket, "updated_rate": rate(updated.get(bucket)), "baseline_rate": rate(baseline.get(bucket)),
         "metric": metric}
        for bucket in sorted(set(updated) | set(baseline))
    ]
