"""Periodic fleet upkeep. Tasks are thin: they call a service and are safe to run twice."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from apps.dashboard.selectors import online_cutoff

from .models import Combination, Device, HealthReport, SpreadSample


@shared_task
def recount_combinations() -> dict:
    """Re-derive each combination's device count from the devices (repairs any drift)."""
    actual = dict(
        Device.objects.filter(combination__isnull=False).values_list("combination").annotate(n=Count("id"))
    )
    fixed = 0
    with transaction.atomic():
        for combination in Combination.objects.select_for_update().only("id", "device_count"):
            wanted = actual.get(combination.pk, 0)
            if combination.device_count != wanted:
                Combination.objects.filter(pk=combination.pk).update(device_count=wanted)
                fixed += 1
    return {"combinations": len(actual), "fixed": fixed}


@shared_task
def spread_snapshot() -> int:
    """Sample the spread for the combinations-over-time chart (at most one sample per half interval)."""
    with transaction.atomic():
        # Two beats started by mistake send this twice per interval: serialize the samplers
        # (an advisory lock; SQLite's writers are serialized anyway) and keep the first.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('fleet-spread-snapshot'))")
        recent = timezone.now() - timedelta(seconds=settings.FLEET["SPREAD_SNAPSHOT_S"] / 2)
        if SpreadSample.objects.filter(at__gt=recent).exists():
            return 0
        return _spread_sample()


def _spread_sample() -> int:
    live = Combination.objects.filter(device_count__gt=0).values_list("versions", "device_count")
    share: dict[str, dict[str, int]] = {}
    combinations = 0
    for versions, count in live:
        combinations += 1
        for component, version in versions.items():
            share.setdefault(component, {}).setdefault(version, 0)
            share[component][version] += count
    sample = SpreadSample.objects.create(
        devices=Device.objects.count(),
        online=Device.objects.filter(last_seen__gte=online_cutoff()).count(),
        combinations=combinations,
        version_share=share,
    )
    return sample.pk


@shared_task
def prune_health_reports(batch: int = 10_000) -> int:
    """Delete health reports past retention, in bounded batches (re-queues itself if more remain)."""
    cutoff = timezone.now() - timedelta(hours=settings.FLEET["HEALTH_RETENTION_H"])
    ids = list(HealthReport.objects.filter(received_at__lt=cutoff).values_list("id", flat=True)[:batch])
    if ids:
        HealthReport.objects.filter(id__in=ids).delete()
        if len(ids) == batch:
            prune_health_reports.delay(batch)
    return len(ids)


@shared_task(ignore_result=True)
def checkin_flush() -> dict:
    """Drain buffered check-ins (beat, every FLEET["CHECKIN_FLUSH_S"]); re-queues itself while a full batch waits.

    Idempotent and safe to run concurrently: a Redis lock admits one flusher, the others return.
    """
    from . import checkin_buffer

    if not checkin_buffer.enabled():
        return {"enabled": False}
    result = checkin_buffer.checkin_flush(max_batches=settings.FLEET["CHECKIN_FLUSH_MAX_BATCHES"])
    if not result.locked_out and result.remaining >= settings.FLEET["CHECKIN_FLUSH_BATCH"]:
        checkin_flush.delay()
    return {"taken": result.taken, "health_rows": result.health_rows, "devices": result.devices,
            "remaining": result.remaining, "locked_out": result.locked_out}
