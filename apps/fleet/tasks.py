"""Periodic fleet upkeep. Tasks are thin: they call a service and are safe to run twice."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
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
    """Sample the spread for the combinations-over-time chart."""
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
