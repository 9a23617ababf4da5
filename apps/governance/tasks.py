"""Governance alerts. Thin, idempotent tasks that take ids; the logic is in `alerts.py`."""

from celery import shared_task

from . import alerts


@shared_task
def combination_check(combination_id: int) -> str:
    """Alert when a newly seen combination is not certified (once per combination)."""
    return alerts.uncertified_combination_alert(combination_id=combination_id)


@shared_task
def budget_check() -> dict:
    """Periodic: alert on every budget its scope's spread breaks now (one open alert per budget)."""
    return alerts.budget_breach_alerts()


@shared_task
def uncertified_sweep() -> int:
    """Periodic safety net: check live combinations a lost on-commit hook never checked."""
    return alerts.uncertified_sweep()
