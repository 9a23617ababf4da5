"""The broadcast module's throttled "fleet changed" signal, and check-ins sending it."""

import pytest
from django.core.cache import cache
from django.db import transaction

from apps.fleet.services import CheckinReport, device_checkin
from apps.live import broadcast
from apps.live.broadcast import FLEET, WALL, capture_events, fleet_changed
from tests.factories import ComponentFactory, DeviceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _open_throttle():
    keys = [f"live:throttle:{group}:fleet.changed" for group in (FLEET, WALL)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def test_it_sends_fleet_changed_once_per_window_however_often_it_is_called():
    with capture_events() as events:
        for _ in range(20):
            with transaction.atomic():
                fleet_changed()
    assert events == [{"kind": "fleet.changed"}]


def test_it_sends_nothing_when_the_transaction_rolls_back():
    with capture_events() as events, pytest.raises(RuntimeError), transaction.atomic():
        fleet_changed()
        raise RuntimeError("boom")
    assert events == []


def test_it_sends_again_once_the_window_has_passed():
    with capture_events() as events:
        fleet_changed()
        cache.delete_many([f"live:throttle:{group}:fleet.changed" for group in (FLEET, WALL)])
        fleet_changed()
    assert len(events) == 2


def test_it_still_sends_when_the_throttle_store_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "add", broken)
    with capture_events() as events:
        fleet_changed()
    assert events == [{"kind": "fleet.changed"}]


def test_it_keeps_the_throttle_window_within_the_consumers_push_delay():
    # Otherwise a change dropped by the throttle could miss the snapshot a page computes.
    from apps.live.consumers import PUSH_INTERVAL_S

    assert broadcast.THROTTLE_WINDOW_S <= PUSH_INTERVAL_S


def test_it_announces_an_accepted_checkin_to_the_fleet_pages():
    ComponentFactory(name="os", kind="os")
    device = DeviceFactory()
    report = CheckinReport(seq=1, installed={"os": "39.1"}, health={}, interval_s=60)
    with capture_events() as events:
        device_checkin(device=device, report=report)
    assert {"kind": "fleet.changed"} in events
