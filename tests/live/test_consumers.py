"""The live websocket surfaces: who may connect, the snapshot, deltas after broadcasts, coalescing."""

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from apps.fleet.models import Combination, Component, Device
from apps.live.broadcast import FLEET, ROLLOUTS, WALL, broadcast_event, rollout_group
from apps.rollouts.models import Rollout
from tests.factories import CohortFactory, DeviceFactory
from tests.live.helpers import communicator, receive_all

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def add_devices(n: int, *, os_version: str = "39.1", broadcast: bool = True) -> None:
    """n devices on one combination; each committed and announced on its own, as check-ins are."""
    Component.objects.get_or_create(name="os", defaults={"kind": "os"})
    combination, _ = Combination.objects.get_or_create(
        key=Combination.key_for({"os": os_version}),
        defaults={"versions": {"os": os_version}},
    )
    for _ in range(n):
        with transaction.atomic():
            DeviceFactory(installed={"os": os_version}, combination=combination)
            Combination.objects.filter(pk=combination.pk).update(device_count=combination.devices.count())
            if broadcast:
                broadcast_event("fleet.changed", {}, groups=(FLEET,))


@database_sync_to_async
def send(kind: str, payload: dict, groups: tuple[str, ...]) -> None:
    broadcast_event(kind, payload, groups=groups)


async def connected(path: str, user) -> tuple:
    comm = await communicator(path, user)
    ok, _ = await comm.connect()
    assert ok
    return comm, await comm.receive_json_from(timeout=5)


async def test_it_closes_with_4401_for_anonymous_users():
    comm = await communicator("/ws/fleet/")
    await comm.connect()
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}
    await comm.disconnect()


async def test_it_closes_with_4403_for_users_without_a_role(outsider_user):
    comm = await communicator("/ws/wall/", outsider_user)
    await comm.connect()
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}
    # Refused before joining: a broadcast to the group reaches nobody on this socket.
    await send("rollout.state", {"rollout": 1, "state": "halted"}, (WALL,))
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_it_rejects_a_foreign_origin(viewer_user):
    comm = await communicator("/ws/fleet/", viewer_user, origin=(b"origin", b"http://evil.example"))
    ok, _ = await comm.connect()
    assert not ok


async def test_it_sends_a_viewer_the_fleet_snapshot_on_connect(viewer_user):
    await add_devices(3, broadcast=False)
    comm, message = await connected("/ws/fleet/", viewer_user)
    assert message["type"] == "snapshot"
    assert message["surface"] == "fleet"
    assert message["data"]["devices"] == 3
    assert message["data"]["combinations"] == 1
    assert message["data"]["top_combinations"][0]["versions"] == [["os", "39.1"]]
    await comm.disconnect()


async def test_it_pushes_only_the_changed_keys_after_a_broadcast(viewer_user):
    comm, snapshot = await connected("/ws/fleet/", viewer_user)
    assert snapshot["data"]["combinations"] == 0
    await add_devices(1, os_version="40.0")
    delta = await comm.receive_json_from(timeout=5)
    assert delta["type"] == "delta"
    assert delta["seq"] == 1
    assert delta["data"]["combinations"] == 1
    assert delta["data"]["devices"] == 1
    # Unchanged parts of the snapshot are not resent.
    assert "top_combinations" in delta["data"] and "long_tail" not in delta["data"]
    await comm.disconnect()


async def test_it_coalesces_a_burst_of_fifty_changes_into_one_push(viewer_user):
    comm, _ = await connected("/ws/fleet/", viewer_user)
    await add_devices(50)
    messages = await receive_all(comm, within=1.5)
    assert 1 <= len(messages) <= 2
    # The last push reflects every change of the burst.
    assert messages[-1]["data"]["devices"] == 50
    await comm.disconnect()


async def test_it_catches_a_change_whose_event_the_sender_throttled_away(viewer_user):
    from django.core.cache import cache

    from apps.live.broadcast import fleet_changed

    @database_sync_to_async
    def throttled_change():
        # As if another check-in had announced itself a moment before this page connected.
        cache.set(f"live:throttle:{FLEET}:fleet.changed", 1, 1)
        with transaction.atomic():
            DeviceFactory()
            fleet_changed()

    comm, snapshot = await connected("/ws/fleet/", viewer_user)
    assert snapshot["data"]["devices"] == 0
    await throttled_change()
    delta = await comm.receive_json_from(timeout=3)
    assert delta["data"]["devices"] == 1
    await comm.disconnect()


async def test_it_spaces_pushes_at_least_a_second_apart(viewer_user):
    comm, _ = await connected("/ws/fleet/", viewer_user)
    await add_devices(1)
    first = await comm.receive_json_from(timeout=5)
    await add_devices(1, os_version="41.0")
    assert await comm.receive_nothing(timeout=0.7)
    second = await comm.receive_json_from(timeout=5)
    assert (first["data"]["devices"], second["data"]["devices"]) == (1, 2)
    await comm.disconnect()


async def test_it_filters_the_fleet_snapshot_by_cohort(viewer_user):
    await add_devices(2, broadcast=False)
    cohort = await database_sync_to_async(CohortFactory)(filter_text='id == "nobody"')
    comm, message = await connected(f"/ws/fleet/?cohort={cohort.pk}", viewer_user)
    assert message["data"]["cohort"] == cohort.pk
    assert message["data"]["devices"] == 0
    await comm.disconnect()


async def test_it_closes_with_4404_for_an_unknown_cohort(viewer_user):
    comm = await communicator("/ws/fleet/?cohort=999999", viewer_user)
    await comm.connect()
    assert await comm.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": 4404,
    }


@database_sync_to_async
def make_rollout(**fields) -> Rollout:
    return Rollout.objects.create(name=fields.pop("name", "os 40 to canaries"), **fields)


async def test_it_sends_one_rollout_and_its_state_changes(viewer_user):
    rollout = await make_rollout(state=Rollout.State.RUNNING)
    comm, snapshot = await connected(f"/ws/rollouts/{rollout.pk}/", viewer_user)
    assert snapshot["data"]["rollout"]["state"] == "running"
    await database_sync_to_async(Rollout.objects.filter(pk=rollout.pk).update)(state=Rollout.State.PAUSED)
    await send(
        "rollout.state",
        {"rollout": rollout.pk, "state": "paused"},
        (ROLLOUTS, rollout_group(rollout.pk)),
    )
    delta = await comm.receive_json_from(timeout=5)
    assert delta["data"]["rollout"]["state"] == "paused"
    assert [e["kind"] for e in delta["events"]] == ["rollout.state"]
    await comm.disconnect()


async def test_it_closes_with_4404_for_an_unknown_rollout(viewer_user):
    comm = await communicator("/ws/rollouts/999999/", viewer_user)
    await comm.connect()
    assert await comm.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": 4404,
    }


async def test_it_does_not_send_another_rollouts_events_to_a_detail_page(viewer_user):
    mine, other = await make_rollout(), await make_rollout(name="other")
    comm, _ = await connected(f"/ws/rollouts/{mine.pk}/", viewer_user)
    await send(
        "rollout.state",
        {"rollout": other.pk, "state": "running"},
        (rollout_group(other.pk),),
    )
    assert await comm.receive_nothing(timeout=1.5)
    await comm.disconnect()


async def test_it_shows_a_halt_on_the_wall_once(viewer_user):
    rollout = await make_rollout(state=Rollout.State.RUNNING)
    comm, snapshot = await connected("/ws/wall/", viewer_user)
    assert [r["name"] for r in snapshot["data"]["rollouts"]] == ["os 40 to canaries"]
    assert snapshot["data"]["halts"] == []

    @database_sync_to_async
    def halt():
        from django.utils import timezone

        with transaction.atomic():
            Rollout.objects.filter(pk=rollout.pk).update(
                state=Rollout.State.HALTED,
                halted_at=timezone.now(),
                halt_reason="crash rate 4.1% vs 0.3%",
            )
            # As the rollout services send it: to the list, the detail page and the wall.
            broadcast_event(
                "rollout.state",
                {"rollout": rollout.pk, "state": "halted"},
                groups=(ROLLOUTS, rollout_group(rollout.pk), WALL),
            )

    await halt()
    delta = await comm.receive_json_from(timeout=5)
    assert delta["data"]["halts"][0]["halt_reason"] == "crash rate 4.1% vs 0.3%"
    assert len(delta["events"]) == 1
    await comm.disconnect()


async def test_it_lists_rollouts_for_the_rollouts_page(viewer_user):
    await make_rollout(
        name="agent 2.0",
        progress_counts={"waves": [{"wave": 0, "total": 10, "succeeded": 4}]},
    )
    comm, snapshot = await connected("/ws/rollouts/", viewer_user)
    row = snapshot["data"]["rollouts"][0]
    assert (row["name"], row["progress"]["percent"]) == ("agent 2.0", 40.0)
    await comm.disconnect()


async def test_it_stops_pushing_after_the_client_leaves(viewer_user):
    comm, _ = await connected("/ws/fleet/", viewer_user)
    await comm.disconnect()
    # A broadcast after leaving must not raise in the consumer (it left the group).
    await add_devices(1)
    assert Device.objects is not None
