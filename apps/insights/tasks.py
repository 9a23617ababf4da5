"""Periodic insights upkeep: thin tasks that call a service and are safe to run twice."""

from celery import shared_task

from .services import combination_health_rollup


@shared_task
def health_rollup() -> dict:
    """Fold new health reports into the per-combination rollup; re-queue while behind (bounded spans)."""
    result = combination_health_rollup()
    if result["behind"]:
        health_rollup.delay()
    return {key: str(value) for key, value in result.items()}
