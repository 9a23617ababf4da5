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


async def test_it_pushes_a_halt_alert_to_the_wall(viewer_user, operator_user):
    from django.utils import timezone

    from apps.rollouts.models import Rollout
    from apps.rollouts.services import rollout_halt

    @database_sync_to_async
    def halt() -> Rollout:
        rollout = Rollout.objects.create(name="os 39.2", state=Rollout.State.RUNNING, started_at=timezone.now())
        first = (timezone.now() - timezone.timedelta(seconds=42)).isoformat()
        return rollout_halt(rollout=rollout, reason="crash rate 4.1%", evidence={"first_failing_report_at": first})

    comm = await communicator("/ws/wall/", viewer_user)
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    await halt()
    delta = await comm.receive_json_from(timeout=5)
    assert delta["data"]["alerts"][0]["title"] == "Rollout halted: os 39.2"
    assert delta["data"]["halts"][0]["halt_reason"] == "crash rate 4.1%"
    assert {e["kind"] for e in delta["events"]} >= {"alert.raised", "rollout.halted"}
    await comm.disconnect()


async def test_it_never_serves_a_second_wall_a_snapshot_older_than_the_halt(viewer_user, operator_user):
    """Two walls share snapshot computations; a stale shared one must not hide the halt from either."""
    from django.utils import timezone

    from apps.rollouts.models import Rollout
    from apps.rollouts.services import rollout_halt

    @database_sync_to_async
    def halt() -> Rollout:
        rollout = Rollout.objects.create(name="os 39.2", state=Rollout.State.RUNNING, started_at=timezone.now())
        return rollout_halt(rollout=rollout, reason="crash rate 4.1%", evidence={})

    walls = []
    for user in (viewer_user, operator_user):
        comm = await communicator("/ws/wall/", user)
        assert (await comm.connect())[0]
        await comm.receive_json_from(timeout=5)
        walls.append(comm)
    await halt()
    for comm in walls:
        delta = await comm.receive_json_from(timeout=5)
        assert delta["data"]["alerts"][0]["title"] == "Rollout halted: os 39.2"
        await comm.disconnect()
