"""Alert tasks: webhook deliveries (one task per event and endpoint) and the cohort-silence scan."""

from celery import shared_task

from . import services


@shared_task(bind=True, max_retries=None, acks_late=True)
def webhook_deliver(self, delivery_id: int) -> str:
    """Send one delivery's next attempt; Celery re-runs it after the backoff the service chose.

    The attempt limit and backoff are settings (FLEET["WEBHOOK_*"]), applied by the service, so
    max_retries here is unbounded on purpose.
    """
    delay = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if delay is None:
        return "done"
    raise self.retry(countdown=delay)


@shared_task
def webhook_redeliver_stale() -> int:
    """Re-enqueue deliveries whose task was lost (enqueue failed during a broker outage)."""
    ids = services.webhook_deliveries_stale()
    for pk in ids:
        webhook_deliver.delay(pk)
    return len(ids)


@shared_task
def cohort_silence_scan() -> int:
    """Beat: raise `cohort_silent` alerts for cohorts whose devices stopped checking in."""
    return len(services.cohort_silence_check())
