"""Reads for the pages. Fleet-wide numbers come from maintained counts, not per-view scans."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from apps.fleet.models import Combination, Device


def online_cutoff():
    seconds = settings.FLEET["POLL_INTERVAL_S"] * settings.FLEET["ONLINE_INTERVALS"]
    return timezone.now() - timedelta(seconds=seconds)


def fleet_summary() -> dict:
    total = Device.objects.count()
    # last_seen is indexed: a range count, not a scan of the fleet's rows.
    online = Device.objects.filter(last_seen__gte=online_cutoff()).count()
    live = Combination.objects.filter(device_count__gt=0)
    top = list(live.order_by("-device_count", "key")[:10])
    counted = live.aggregate(n=Sum("device_count"))["n"] or 0
    return {
        "devices": total,
        "online": online,
        "offline": total - online,
        "combinations": live.count(),
        "top_combinations": [
            {"key": c.key, "versions": c.versions, "devices": c.device_count,
             "share": (c.device_count / counted * 100) if counted else 0.0}
            for c in top
        ],
    }


def device_search(query: str = "") -> QuerySet[Device]:
    devices = Device.objects.select_related("combination").order_by("uid")
    query = query.strip()
    if query:
        devices = devices.filter(Q(uid__icontains=query) | Q(hw_model__icontains=query))
    return devices
