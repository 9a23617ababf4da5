"""The wall's websocket carries alerts: in the snapshot, and as a delta when someone acknowledges."""

import pytest
from channels.db import database_sync_to_async

from apps.alerts.models import Alert
from apps.alerts.services import alert_acknowledge, alert_raise
from tests.live.helpers import communicator

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def raise_alert() -> Alert:
    return alert_raise(kind="budget_breach", severity="warning", title="41 live combinations (budget 30)")


@database_sync_to_async
def acknowledge(alert: Alert, user) -> None:
    alert_acknowledge(alert=alert, actor=user)


async def test_it_includes_alerts_in_the_wall_snapshot(viewer_user):
    alert = await raise_alert()
    comm = await communicator("/ws/wall/", viewer_user)
    assert (await comm.connect())[0]
    snapshot = await comm.receive_json_from(timeout=5)
    [row] = snapshot["data"]["alerts"]
    assert (row["id"], row["title"], row["open"]) == (alert.pk, "41 live combinations (budget 30)", True)
    await comm.disconnect()


async def test_it_pushes_the_acknowledgement_to_the_wall(viewer_user, operator_user):
    alert = await raise_alert()
    comm = await communicator("/ws/wall/", viewer_user)
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    await acknowledge(alert, operator_user)
    delta = await comm.receive_json_from(timeout=5)
    assert delta["type"] == "delta"
    [row] = delta["data"]["alerts"]
    assert (row["open"], row["acknowledged_by"]) == (False, operator_user.username)
    assert [e["kind"] for e in delta["events"]] == ["alert.acknowledged"]
    await comm.disconnect()
