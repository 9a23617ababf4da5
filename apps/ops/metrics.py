"""Prometheus metrics (prometheus_client). Works across gunicorn/uvicorn/Celery processes when
PROMETHEUS_MULTIPROC_DIR is set (the launcher and docs/deployment.md set it); otherwise each
process reports its own registry.

Counters and histograms are updated in the hot path (a few microseconds); fleet-wide gauges
(rollouts and deployments by state, queue depth) are read at scrape time by FleetCollector.
"""

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CHECKINS = Counter("fleet_checkins_total", "Device check-ins answered", ["result"])
CHECKIN_PATHS = Counter("fleet_checkin_path_total",
                        "Accepted/duplicate check-ins by path: buffered in Redis or written synchronously", ["path"])
CHECKIN_FLUSHED = Counter("fleet_checkin_flushed_total", "Buffered health reports written to PostgreSQL")
CHECKIN_ERRORS = Counter("fleet_checkin_errors_total", "Device check-ins rejected, by kind", ["kind"])
CHECKIN_SECONDS = Histogram(
    "fleet_checkin_seconds", "Check-in handling time",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TASK_SECONDS = Histogram("fleet_task_seconds", "Celery task run time", ["task"],
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120))
TASK_WAIT_SECONDS = Histogram("fleet_task_queue_wait_seconds", "Time a task waited in the queue", ["task"],
                              buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60))
WEBSOCKETS = Gauge("fleet_websocket_connections", "Open dashboard websockets", ["surface"],
                   multiprocess_mode="livesum")


def record_checkin(result: str, seconds: float, *, path: str = "sync") -> None:
    CHECKINS.labels(result).inc()
    CHECKIN_PATHS.labels(path).inc()
    CHECKIN_SECONDS.observe(seconds)


def record_checkin_flush(rows: int) -> None:
    CHECKIN_FLUSHED.inc(rows)


def record_checkin_error(kind: str) -> None:
    CHECKIN_ERRORS.labels(kind).inc()


class FleetCollector:
    """Gauges read from the database and the broker at scrape time (cheap grouped counts)."""

    def collect(self):
        from django.conf import settings
        from django.db.models import Count

        from apps.fleet.models import Combination, Device
        from apps.rollouts.models import Deployment, Rollout

        rollouts = GaugeMetricFamily("fleet_rollouts", "Rollouts by state", labels=["state"])
        by_state = dict(Rollout.objects.values_list("state").annotate(n=Count("id")))
        for state in Rollout.State.values:
            rollouts.add_metric([state], by_state.get(state, 0))
        yield rollouts
        deployments = GaugeMetricFamily("fleet_deployments", "Deployments of active rollouts by state", labels=["state"])
        active = dict(
            Deployment.objects.filter(rollout__state__in=Rollout.ACTIVE_STATES)
            .values_list("state").annotate(n=Count("id"))
        )
        for state in Deployment.State.values:
            deployments.add_metric([state], active.get(state, 0))
        yield deployments
        halted = GaugeMetricFamily("fleet_rollouts_halted", "Rollouts currently halted")
        halted.add_metric([], by_state.get(Rollout.State.HALTED, 0))
        yield halted
        halts = GaugeMetricFamily("fleet_rollout_halts", "Rollouts that were ever halted (halted_at set)")
        halts.add_metric([], Rollout.objects.filter(halted_at__isnull=False).count())
        yield halts
        yield GaugeMetricFamily("fleet_devices", "Devices registered", value=Device.objects.count())
        yield GaugeMetricFamily("fleet_live_combinations", "Distinct live version combinations",
                                value=Combination.objects.filter(device_count__gt=0).count())
        depth = GaugeMetricFamily("fleet_celery_queue_depth", "Tasks waiting in the Celery queue", labels=["queue"])
        try:
            import redis

            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
            queue = settings.CELERY_TASK_DEFAULT_QUEUE
            depth.add_metric([queue], client.llen(queue))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the broker is down
            pass
        yield depth
        buffered = GaugeMetricFamily("fleet_checkin_buffer_depth", "Check-ins buffered in Redis, not yet flushed")
        lag = GaugeMetricFamily("fleet_checkin_buffer_oldest_seconds", "Age of the oldest unflushed check-in")
        try:
            from apps.fleet import checkin_buffer

            buffered.add_metric([], checkin_buffer.depth())
            lag.add_metric([], checkin_buffer.oldest_age_s())
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is down
            pass
        yield buffered
        yield lag


def render() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry = _single_process_registry(REGISTRY)
    registry.register(FleetCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _single_process_registry(default):
    registry = CollectorRegistry()
    for collector in (CHECKINS, CHECKIN_PATHS, CHECKIN_FLUSHED, CHECKIN_ERRORS, CHECKIN_SECONDS, TASK_SECONDS, TASK_WAIT_SECONDS, WEBSOCKETS):
        registry.register(collector)
    return registry


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    started: dict[str, float] = {}

    @before_task_publish.connect(weak=False)
    def _stamp(headers=None, **kwargs):
        if headers is not None:
            headers.setdefault("fleet_sent_at", time.time())

    @task_prerun.connect(weak=False)
    def _start(task_id=None, task=None, **kwargs):
        started[task_id] = time.monotonic()
        sent = getattr(task.request, "fleet_sent_at", None) if task is not None else None
        if sent:
            TASK_WAIT_SECONDS.labels(task.name).observe(max(0.0, time.time() - float(sent)))

    @task_postrun.connect(weak=False)
    def _stop(task_id=None, task=None, **kwargs):
        begun = started.pop(task_id, None)
        if begun is not None and task is not None:
            TASK_SECONDS.labels(task.name).observe(time.monotonic() - begun)
