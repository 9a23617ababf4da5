from celery import shared_task


@shared_task
def engine_tick() -> int:
    """Advance every active rollout (being written)."""
    return 0
