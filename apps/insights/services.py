"""Writes of the insights app: the health-by-combination rollup and the follow-up rollout for stragglers."""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from apps.audit.services import audit_record
from apps.fleet.models import Cohort, HealthReport
from apps.fleet.services import cohort_create, cohort_members_set
from apps.rollouts.models import Deployment, Rollout
from apps.rollouts.services import RolloutError, rollout_create

from .models import CombinationHealth, RollupCursor
from .selectors import StragglerQuery, rollout_targets, stragglers

CURSOR = "combination-health"
BUCKET_S = 300
COUNTERS = ("reports", "exposure_s", "crashes", "failed_health_checks", "failed_installs", "finished_installs")


def _bucket(at: datetime) -> datetime:
    return at - timedelta(seconds=at.timestamp() % BUCKET_S)


def _upsert(rows: dict[tuple[int, datetime], dict[str, int]]) -> None:
    """Add counters to (combination, bucket) rows: one INSERT … ON CONFLICT DO UPDATE per row batch.

    Additive, so it is only safe because the cursor (locked by the caller) hands every report to
    exactly one run.
    """
    if not rows:
        return
    table = CombinationHealth._meta.db_table
    columns = ", ".join(COUNTERS)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTERS)
    sql = (
        f"INSERT INTO {table} (combination_id, bucket, {columns}) VALUES (%s, %s, {', '.join(['%s'] * len(COUNTERS))}) "
        f"ON CONFLICT (combination_id, bucket) DO UPDATE SET {updates}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = [(combo, adapt(bucket), *(counts[c] for c in COUNTERS)) for (combo, bucket), counts in rows.items()]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def combination_health_rollup(*, now: datetime | None = None, max_span_s: float | None = None,
                              max_reports: int | None = None) -> dict:
    """Fold new health reports and finished deployments into 5-minute buckets per combination.

    Health reports: ids in (upto_id, seen_max_id] (the highest id the previous run saw), bucketed by
    their own `received_at`, so a report the check-in buffer flushed late still lands in its bucket.
    Deployments: `finished_at` in (upto, now − lag] (they are written in short transactions).
    Each part is bounded per run; the task re-queues itself while behind. Concurrent runs serialize
    on the locked cursor row, and counts and cursor commit together: every row is counted once.
    """
    config = settings.INSIGHTS
    now = now or timezone.now()
    max_span = timedelta(seconds=max_span_s or config["ROLLUP_MAX_SPAN_S"])
    max_reports = max_reports or config["ROLLUP_MAX_REPORTS"]
    end_wanted = now - timedelta(seconds=config["ROLLUP_LAG_S"])
    RollupCursor.objects.get_or_create(
        name=CURSOR, defaults={"upto": now - timedelta(hours=settings.FLEET["HEALTH_RETENTION_H"])})
    with transaction.atomic():
        cursor = RollupCursor.objects.select_for_update().get(name=CURSOR)
        rows: dict[tuple[int, datetime], dict[str, int]] = {}

        def add(combo: int, minute: datetime, **counts: int) -> None:
            cell = rows.setdefault((combo, _bucket(minute)), dict.fromkeys(COUNTERS, 0))
            for key, value in counts.items():
                cell[key] += value or 0

        first_id, last_id = cursor.upto_id, cursor.seen_max_id
        # At most max_reports per run, whatever the gaps in the id sequence (one PK index walk).
        nth = list(HealthReport.objects.filter(id__gt=first_id, id__lte=last_id).order_by("id")
                   .values_list("id", flat=True)[max_reports - 1:max_reports])
        if nth:
            last_id = nth[0]
        horizon = now - timedelta(hours=config["ROLLUP_RETENTION_H"])
        if last_id > first_id:
            reports = (
                HealthReport.objects.filter(id__gt=first_id, id__lte=last_id, combination__isnull=False,
                                            received_at__gte=horizon)
                .annotate(minute=TruncMinute("received_at")).values("combination_id", "minute")
                .annotate(n=Count("id"), exposure=Sum("interval_s"), c=Sum("crashes"),
                          f=Sum("failed_health_checks"))
            )
            for row in reports:
                add(row["combination_id"], row["minute"], reports=row["n"], exposure_s=row["exposure"],
                    crashes=row["c"], failed_health_checks=row["f"])
        start = cursor.upto
        end = max(start, min(end_wanted, start + max_span))
        if end > start:
            finished = (
                Deployment.objects.filter(finished_at__gte=start, finished_at__lt=end,
                                          device__combination__isnull=False,
                                          state__in=(Deployment.State.SUCCEEDED, Deployment.State.FAILED))
                .annotate(minute=TruncMinute("finished_at"))
                .values("minute", combination_id=F("device__combination_id"))
                .annotate(n=Count("id"), failed=Count("id", filter=Q(state=Deployment.State.FAILED)))
            )
            for row in finished:
                add(row["combination_id"], row["minute"], finished_installs=row["n"], failed_installs=row["failed"])
        _upsert(rows)
        newest = HealthReport.objects.aggregate(m=Max("id"))["m"] or 0
        reports_behind = last_id < cursor.seen_max_id
        behind = reports_behind or end < end_wanted
        RollupCursor.objects.filter(name=CURSOR).update(
            upto=end, upto_id=max(last_id, first_id),
            seen_max_id=cursor.seen_max_id if reports_behind else max(newest, cursor.seen_max_id))
    pruned, _ = CombinationHealth.objects.filter(bucket__lt=horizon).delete()
    return {"reports_upto": max(last_id, first_id), "from": start, "to": end, "rows": len(rows), "pruned": pruned,
            "behind": behind}


@transaction.atomic
def followup_rollout_create(*, rollout: Rollout, actor, component: str = "") -> Rollout:
    """A draft rollout of the same target(s) to exactly the retryable stragglers, in one wave.

    Its cohort is an explicit list of those devices (made by the fleet services, audited), so the
    follow-up reaches the devices that were retryable when the operator clicked, not whoever
    matches later. The first wave's gates are copied so the follow-up halts like the original.
    """
    targets = rollout_targets(rollout, component)
    if not targets:
        raise RolloutError(f"rollout has no target for component {component!r}", field="component")
    uids = list(
        stragglers(StragglerQuery(rollout=rollout, component=component)).filter(retryable=True)
        .order_by("uid").values_list("uid", flat=True)
    )
    if not uids:
        raise RolloutError("no straggler can be retried now (failing or back online, in the cohorts, on "
                           "supported hardware)", field="devices")
    cohort = cohort_create(
        name=f"follow-up-{rollout.pk}-{uuid.uuid4().hex[:8]}", kind=Cohort.Kind.EXPLICIT, actor=actor,
        description=f"Retryable stragglers of rollout #{rollout.pk} ({rollout.name})"[:300],
    )
    cohort_members_set(cohort=cohort, actor=actor, device_uids=uids)
    first = rollout.waves.order_by("index").first()
    wave = {"cohort": cohort, "size_kind": "percent", "size_value": 100, "name": "Follow-up"}
    if first is not None:
        wave.update(spike_gate=first.spike_gate, max_failed_count=first.max_failed_count,
                    max_failed_percent=first.max_failed_percent, success_min_percent=first.success_min_percent,
                    min_soak_s=first.min_soak_s)
    followup = rollout_create(
        name=f"{rollout.name} · follow-up"[:120],
        releases=[t.release for t in targets],
        waves=[wave],
        actor=actor,
        description=f"Follow-up of rollout #{rollout.pk} for {len(uids)} retryable stragglers.",
        conflict_policy=rollout.conflict_policy,
        settle_s=rollout.settle_s,
        max_retries=rollout.max_retries,
        retryable_error_codes=rollout.retryable_error_codes,
    )
    audit_record(actor=actor, action="rollout.followup", obj=followup,
                 after={"of_rollout": rollout.pk, "devices": len(uids), "cohort": cohort.name,
                        "component": component or None})
    return followup
