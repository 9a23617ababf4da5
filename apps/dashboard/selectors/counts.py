"""Counts over the devices that stay cheap at a million devices: maintained, exact when small, else sampled.

`SELECT count(*) FROM fleet_device` alone took ~300 ms at 1,000,000 devices on the 2-core bench
machine, and a cohort filter over JSON attributes scans every row (0.7–2.5 s). Pages and live
snapshots therefore never count the whole fleet themselves:

- the fleet's size is the maintained `Combination.device_count` sum (plus the few devices that
  have not reported a combination yet, an indexed `IS NULL` count);
- any other count is exact while the fleet has at most `EXACT_COUNT_LIMIT` devices, and above
  that is *estimated* from a fixed PostgreSQL `TABLESAMPLE SYSTEM` sample of about
  `SAMPLE_ROWS` devices, scaled to the fleet's size. Results say `estimated: True` and how many
  devices were sampled, and the pages show them as "≈ n".
"""

from dataclasses import asdict, dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Q, QuerySet, Sum

from apps.fleet.models import Combination, Device

# At or below this many devices every count is exact (an indexed count of 100k rows is ~10 ms).
EXACT_COUNT_LIMIT = 100_000
# About this many devices are sampled for an estimate (1 % of a 1M fleet; ±1 point at 95 %).
SAMPLE_ROWS = 10_000
# A fixed seed: the same pages are sampled each time, so an estimate does not jitter between refreshes.
SAMPLE_SEED = 20261127


@dataclass
class Estimate:
    count: int
    estimated: bool = False
    sampled: int = 0
    matched_in_sample: int = 0


def fleet_size() -> int:
    """Devices in the fleet, from the maintained per-combination counts (no scan of the devices)."""
    maintained = Combination.objects.filter(device_count__gt=0).aggregate(n=Sum("device_count"))["n"] or 0
    return maintained + Device.objects.filter(combination__isnull=True).count()


def _where(queryset: QuerySet) -> tuple[str, list] | None:
    """The WHERE clause of a single-table device query, or None when it joins (then no sampling)."""
    query = queryset.query
    if query.where is None or not query.where.children:
        return "TRUE", []
    compiler = query.get_compiler(using=queryset.db)
    sql, params = compiler.compile(query.where)
    if len([alias for alias, refcount in query.alias_refcount.items() if refcount]) > 1:
        return None
    return sql, list(params)


def sample_percent(total: int, rows: int | None = None) -> float:
    return min(100.0, max(0.01, (rows or SAMPLE_ROWS) * 100.0 / max(total, 1)))


def sampled_devices(
    condition: Q, *, total: int, uids: int = 0, rows: int | None = None
) -> tuple[Estimate, list[str]] | None:
    """Count (and up to `uids` ids, in id order) of the devices matching `condition` in a fixed
    page sample of about `rows` devices (default SAMPLE_ROWS), scaled to `total`; None when the
    condition cannot be sampled (it joins)."""
    where = _where(Device.objects.filter(condition))
    if where is None or connection.vendor != "postgresql":
        return None
    where_sql, params = where
    percent = sample_percent(total, rows)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH s AS (
                SELECT "fleet_device"."uid" AS uid, COALESCE(({where_sql}), FALSE) AS hit
                FROM "fleet_device" TABLESAMPLE SYSTEM (%s) REPEATABLE (%s)
            )
            SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM s WHERE hit),
                   ARRAY(SELECT uid FROM s WHERE hit ORDER BY uid LIMIT %s)
            """,
            [*params, percent, SAMPLE_SEED, uids],
        )
        sampled, matched, sample = cursor.fetchone()
    if percent >= 100.0:
        return Estimate(count=matched, sampled=sampled, matched_in_sample=matched), list(sample)
    count = round(matched * total / sampled) if sampled else 0
    return Estimate(count=count, estimated=True, sampled=sampled, matched_in_sample=matched), list(sample)


def device_count(condition: Q, *, total: int | None = None, cache_key: str = "", cache_s: float = 0) -> Estimate:
    """How many devices match: exact on a small fleet, else estimated from a sample.

    With `cache_key`, an estimate (never an exact count) is shared by every process for `cache_s`
    seconds through the Redis cache: live surfaces recompute snapshots often, and the fleet's
    online share does not move within seconds.
    """
    total = fleet_size() if total is None else total
    if total <= EXACT_COUNT_LIMIT:
        return Estimate(count=Device.objects.filter(condition).count())
    key = f"dashboard:estimate:{cache_key}"
    if cache_key and (cached := cache.get(key)) is not None:
        return Estimate(**cached)
    sampled = sampled_devices(condition, total=total)
    if sampled is None:
        return Estimate(count=Device.objects.filter(condition).count())
    if cache_key:
        cache.set(key, asdict(sampled[0]), cache_s)
    return sampled[0]
