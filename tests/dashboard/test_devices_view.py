"""Device search (ids, attributes, versions, cohort filters) and the device page."""

import pytest

from apps.fleet.models import HealthReport
from tests.dashboard.helpers import components, place
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    components("agent")
    place(
        1,
        {"os": "39.1", "agent": "2.0"},
        uid="kitchen-1",
        hw_model="rpi4",
        attributes={"region": "eu-west", "ram_gb": 4},
        tags={"canary": True},
    )
    place(
        1,
        {"os": "40.0", "agent": "2.0"},
        uid="garage-1",
        hw_model="nuc",
        attributes={"region": "us-east"},
    )
    place(
        1,
        {"os": "39.1"},
        uid="attic-1",
        hw_model="rpi3",
        attributes={"region": "eu-west", "ram_gb": "4"},
    )


def uids(client, q: str) -> list[str]:
    return [d["uid"] for d in client.get("/devices/", {"q": q, "format": "json"}).json()["devices"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kitchen", ["kitchen-1"]),
        ("rpi", ["attic-1", "kitchen-1"]),
        ("hw:nuc", ["garage-1"]),
        ("id:garage", ["garage-1"]),
        ("region:eu-west", ["attic-1", "kitchen-1"]),
        ("ram_gb:4", ["attic-1", "kitchen-1"]),  # the number 4 and the string "4"
        ("os=39.1", ["attic-1", "kitchen-1"]),
        ("version.os=40.0", ["garage-1"]),
        ("os=39.1 agent=2.0", ["kitchen-1"]),
        ("region:eu-west rpi3", ["attic-1"]),
        ('version.os < "40" and tag:canary', ["kitchen-1"]),
        ('hw ~ "rpi"', ["attic-1", "kitchen-1"]),
    ],
)
def test_it_finds_devices(viewer_client, fleet, query, expected):
    assert uids(viewer_client, query) == expected


def test_it_treats_a_lookup_looking_name_as_plain_text(viewer_client, fleet):
    assert uids(viewer_client, "attributes__region:eu-west") == []


def test_it_shows_a_bad_filter_with_a_caret_under_the_position(viewer_client, fleet):
    response = viewer_client.get("/devices/", {"q": 'hw == "rpi4" and (region =='})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in page
    assert "No devices match" in page
    assert '<span class="mark">^</span>' in page


def test_it_shows_installed_versions_health_and_checkins_on_the_device_page(
    viewer_client,
):
    components()
    device = place(1, {"os": "39.1"}, uid="kitchen-1")[0]
    HealthReport.objects.create(
        device=device,
        seq=1,
        interval_s=60,
        crashes=2,
        reboots=1,
        combination=device.combination,
    )
    HealthReport.objects.create(device=device, seq=2, interval_s=60, crashes=1)
    page = viewer_client.get("/devices/kitchen-1/").content.decode()
    assert "<code>39.1</code>" in page
    assert 'Crashes</span><span class="value">3<' in page
    assert 'Reports</span><span class="value">2<' in page
    assert "<code>os=39.1</code>" in page  # check-in history with its combination


def test_it_answers_404_for_an_unknown_device(viewer_client):
    DeviceFactory(uid="known")
    assert viewer_client.get("/devices/unknown/").status_code == 404
