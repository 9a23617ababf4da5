"""Alert test helpers: a running rollout to halt, an open alert to acknowledge."""

import pytest
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.rollouts.models import Rollout
from tests.live.conftest import _close_worker_thread_connections  # noqa: F401 - the websocket tests need it


def running(name: str = "os 40 → canaries") -> Rollout:
    return Rollout.objects.create(name=name, state=Rollout.State.RUNNING, started_at=timezone.now())


@pytest.fixture
def alert(db) -> Alert:
    return alert_raise(
        kind=Alert.Kind.OTHER, severity=Alert.Severity.WARNING, title="cohort eu-north went quiet",
        detail="41 of 60 devices silent for 20 min", dedupe_key="cohort_silent:7",
    )
