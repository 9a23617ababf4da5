"""Engine tasks: thin, idempotent, take ids. The beat runs `engine_tick` every FLEET["ENGINE_TICK_S"]."""

import time

from celery import shared_task
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from .engine import rollout_evaluate
from .models import Rollout


def rollouts_to_tick() -> list[int]:
    """Active rollouts, and scheduled ones whose start time has come (oldest tick first)."""
    due = Q(state__in=Rollout.ACTIVE_STATES) | Q(state=Rollout.State.SCHEDULED, scheduled_for__lte=timezone.now())
    oldest_first = F("last_tick_at").asc(nulls_first=True)
    return list(Rollout.objects.filter(due).order_by(oldest_first, "pk").values_list("pk", flat=True))


@shared_task
def engine_tick(budget_s: float | None = None) -> int:
    """Evaluate every due rollout inline within a time budget; re-queue the rest one task each.

    The budget keeps one slow tick from overlapping the next beat; rollouts that did not fit
    go to workers in parallel (a duplicate evaluation is harmless: the rollout row is claimed
    with SKIP LOCKED). Returns how many rollouts were evaluated inline.
    """
    budget = budget_s if budget_s is not None else settings.FLEET["ENGINE_TICK_S"] * 0.8
    deadline = time.monotonic() + budget
    ids = rollouts_to_tick()
    done = 0
    for index, rollout_id in enumerate(ids):
        if time.monotonic() > deadline:
            for rest in ids[index:]:
                rollout_evaluate_task.delay(rest)
            break
        rollout_evaluate(rollout_id)
        done += 1
    return done


@shared_task
def rollout_evaluate_task(rollout_id: int) -> str:
    """One tick for one rollout (also enqueued right after a start or resume)."""
    return rollout_evaluate(rollout_id)
