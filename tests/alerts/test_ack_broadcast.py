"""An acknowledgement reaches every open wall and dashboard client live (real Redis channel layer)."""

import pytest
from channels.db import database_sync_to_async

from apps.alerts.models import Alert
from apps.alerts.services import alert_acknowledge, alert_raise
from tests.live.helpers import communicator

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def raise_alert() -> Alert:
    return alert_raise(kind="cohort_silent", severity="warning", title="Cohort eu-north went silent",
                       dedupe_key="cohort_silent:1")


@database_sync_to_async
def acknowledge(alert: Alert, user) -> None:
    alert_acknowledge(alert=alert, actor=user, note="looking")


async def _connected(path: str, user):
    comm = await communicator(path, user)
    assert (await comm.connect())[0]
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    return comm


async def _event(comm, kind: str) -> dict:
    """The first delta carrying an event of `kind` (other deltas may come first)."""
    while True:
        message = await comm.receive_json_from(timeout=5)
        for event in message.get("events", []):
            if event["kind"] == kind:
                return event


async def test_it_broadcasts_the_acknowledgement_to_every_wall_and_the_overview(viewer_user, operator_user):
    alert = await raise_alert()
    clients = [
        await _connected("/ws/wall/", viewer_user),
        await _connected("/ws/wall/", operator_user),
        await _connected("/ws/fleet/", viewer_user),  # the dashboard overview
    ]
    await acknowledge(alert, operator_user)
    for comm in clients:
        event = await _event(comm, "alert.acknowledged")
        row = event["alert"]
        assert (row["id"], row["open"], row["acknowledged_by"], row["ack_note"]) == (
            alert.pk, False, "oscar-operator", "looking",
        )
        await comm.disconnect()


async def test_it_broadcasts_a_new_alert_to_the_overview_too(viewer_user):
    comm = await _connected("/ws/fleet/", viewer_user)
    alert = await raise_alert()
    event = await _event(comm, "alert.raised")
    assert (event["alert"]["id"], event["alert"]["kind"]) == (alert.pk, "cohort_silent")
    await comm.disconnect()
