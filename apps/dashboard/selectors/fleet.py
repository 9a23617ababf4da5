"""The fleet's version-combination spread, for the overview page and the fleet websocket.

Fleet-wide numbers come from the maintained `Combination.device_count`, never from a scan of
the devices. A cohort's spread has no maintained counts: it is one GROUP BY over the cohort's
devices by combination (indexed FK), which is fine at today's fleet sizes and is the thing to
replace with maintained per-cohort counts once cohorts get large.
"""

import math
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from apps.fleet.models import Cohort, Combination, Component, SpreadSample

from .counts import Estimate, device_count, fleet_size

TOP_COMBINATIONS = 10
# A combination below this share of the reporting devices is "long tail".
LONG_TAIL_PERCENT = 1.0
HEATMAP_ROWS = 12
HEATMAP_COLS = 10
SERIES_VERSIONS = 6
NOT_INSTALLED = "—"
# An *estimated* online count (fleets above EXACT_COUNT_LIMIT) is shared between requests this long.
ONLINE_CACHE_S = 5
OTHER = "other"


def online_cutoff():
    seconds = settings.FLEET["POLL_INTERVAL_S"] * settings.FLEET["ONLINE_INTERVALS"]
    return timezone.now() - timedelta(seconds=seconds)


def version_sort_key(version: str) -> tuple:
    """Natural order: "39.10" after "39.9"; text parts after numbers so the key always compares."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-+_]", version))


def components() -> tuple[str, list[str]]:
    """The OS component's name and the other components' names, in display order."""
    names = list(Component.objects.values_list("name", "kind"))
    os_name = next((name for name, kind in names if kind == Component.Kind.OS), "os")
    return os_name, [name for name, _ in names if name != os_name]


def _combination_rows(cohort: Cohort | None) -> list[tuple[dict[str, str], int]]:
    if cohort is None:
        return list(Combination.objects.filter(device_count__gt=0).values_list("versions", "device_count"))
    grouped = (
        cohort.devices()
        .filter(combination__isnull=False)
        .order_by()
        .values("combination_id", "combination__versions")
        .annotate(n=Count("id"))
    )
    return [(row["combination__versions"], row["n"]) for row in grouped]


def _ordered(versions: dict[str, str], order: list[str]) -> list[list[str]]:
    rank = {name: i for i, name in enumerate(order)}
    return [[name, versions[name]] for name in sorted(versions, key=lambda n: (rank.get(n, len(rank)), n))]


def _share(part: int, whole: int) -> float:
    return round(part * 100 / whole, 2) if whole else 0.0


def _axis(counts: dict[str, int], limit: int) -> list[str]:
    """The `limit` most common versions, newest first; the rest fold into "other"."""
    kept = sorted(counts, key=lambda v: (-counts[v], v))[:limit]
    ordered = sorted((v for v in kept if v != NOT_INSTALLED), key=version_sort_key, reverse=True)
    if NOT_INSTALLED in kept:
        ordered.append(NOT_INSTALLED)
    if len(counts) > limit:
        ordered.append(OTHER)
    return ordered


def _heatmap(rows: list[tuple[dict[str, str], int]], os_name: str, app: str) -> dict[str, Any]:
    pairs: dict[tuple[str, str], int] = {}
    os_counts: dict[str, int] = {}
    app_counts: dict[str, int] = {}
    for versions, n in rows:
        o, a = versions.get(os_name, NOT_INSTALLED), versions.get(app, NOT_INSTALLED)
        pairs[(o, a)] = pairs.get((o, a), 0) + n
        os_counts[o] = os_counts.get(o, 0) + n
        app_counts[a] = app_counts.get(a, 0) + n
    row_axis, col_axis = _axis(os_counts, HEATMAP_ROWS), _axis(app_counts, HEATMAP_COLS)
    row_index = {v: i for i, v in enumerate(row_axis)}
    col_index = {v: i for i, v in enumerate(col_axis)}
    cells = [[0] * len(col_axis) for _ in row_axis]
    for (o, a), n in pairs.items():
        cells[row_index.get(o, len(row_axis) - 1)][col_index.get(a, len(col_axis) - 1)] += n
    return {
        "os": os_name,
        "app": app,
        "rows": row_axis,
        "cols": col_axis,
        "cells": cells,
        "max": max((n for row in cells for n in row), default=0),
    }


def fleet_summary(*, cohort: Cohort | None = None, app: str | None = None) -> dict[str, Any]:
    """Devices online/offline and the version-combination spread, fleet-wide or for one cohort."""
    if cohort is None:
        total, online = _online()
    else:
        devices = cohort.devices()
        total = devices.count()
        # last_seen is indexed: a range count, not a scan of the fleet's rows.
        online = Estimate(count=devices.filter(last_seen__gte=online_cutoff()).count())
    rows = _combination_rows(cohort)
    os_name, apps = components()
    order = [os_name, *apps]
    if app not in apps:
        app = apps[0] if apps else ""
    reporting = sum(n for _, n in rows)
    rows.sort(key=lambda row: (-row[1], Combination.key_for(row[0])))
    tail = [n for _, n in rows if n * 100 < LONG_TAIL_PERCENT * reporting]
    return {
        "cohort": cohort.pk if cohort else None,
        "cohort_name": cohort.name if cohort else "",
        "devices": total,
        "online": online.count,
        "offline": total - online.count,
        # Above EXACT_COUNT_LIMIT devices, online/offline are estimated from a sample (shown as "≈").
        "online_estimated": online.estimated,
        "reporting": reporting,
        "combinations": len(rows),
        "top_combinations": [
            {
                "key": Combination.key_for(v),
                "versions": _ordered(v, order),
                "devices": n,
                "share": _share(n, reporting),
            }
            for v, n in rows[:TOP_COMBINATIONS]
        ],
        "long_tail": {
            "percent": LONG_TAIL_PERCENT,
            "combinations": len(tail),
            "devices": sum(tail),
            "share": _share(sum(tail), reporting),
        },
        "components": order,
        "heatmap": _heatmap(rows, os_name, app),
    }


def spread_series(*, component: str = "", hours: int = 24, max_points: int = 500) -> dict[str, Any]:
    """The sampled spread over time: distinct combinations and one component's version shares (%)."""
    since = timezone.now() - timedelta(hours=hours)
    samples = list(
        SpreadSample.objects.filter(at__gte=since)
        .order_by("at")
        .values_list("at", "devices", "combinations", "version_share")
    )
    if len(samples) > max_points:
        step = math.ceil(len(samples) / max_points)
        samples = samples[::-1][::step][::-1]
    component = component or components()[0]
    totals: dict[str, int] = {}
    for *_, share in samples:
        for version, n in share.get(component, {}).items():
            totals[version] = totals.get(version, 0) + n
    shown = sorted(totals, key=lambda v: (-totals[v], v))[:SERIES_VERSIONS]
    shown.sort(key=version_sort_key, reverse=True)
    series: dict[str, list[float]] = {v: [] for v in shown}
    other: list[float] = []
    for *_, share in samples:
        counts = share.get(component, {})
        whole = sum(counts.values())
        for version in shown:
            series[version].append(_share(counts.get(version, 0), whole))
        other.append(_share(whole - sum(counts.get(v, 0) for v in shown), whole))
    if len(totals) > len(shown):
        series[OTHER] = other
    return {
        "component": component,
        "hours": hours,
        "t": [int(at.timestamp()) for at, *_ in samples],
        "devices": [devices for _, devices, *_ in samples],
        "combinations": [combinations for _, _, combinations, _ in samples],
        "share": series,
    }


def _online() -> tuple[int, Estimate]:
    """The fleet's size (maintained) and how many devices are online (exact when small, else sampled)."""
    total = fleet_size()
    online = device_count(Q(last_seen__gte=online_cutoff()), total=total, cache_key="online", cache_s=ONLINE_CACHE_S)
    online.count = min(online.count, total)
    return total, online


def fleet_health() -> dict[str, int]:
    """The wall screen's headline numbers: maintained size, online (sampled above 100k devices), combinations."""
    total, online = _online()
    return {
        "devices": total,
        "online": online.count,
        "offline": total - online.count,
        "online_estimated": online.estimated,
        "combinations": Combination.objects.filter(device_count__gt=0).count(),
    }
