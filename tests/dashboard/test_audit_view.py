"""The audit log page: filters by actor, action, object type and days in the viewer's time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from apps.audit.models import AuditEntry
from apps.audit.services import audit_record

pytestmark = pytest.mark.django_db


def entry(
    action: str,
    actor: str,
    object_type: str = "fleet.cohort",
    at: datetime | None = None,
) -> AuditEntry:
    record = audit_record(actor=actor, action=action, object_type=object_type, object_id="1")
    if at is not None:
        # `at` is auto_now_add and entries are append-only: set the time with a queryset update.
        AuditEntry.objects.filter(pk=record.pk).update(at=at)
    return record


def actions(response) -> list[str]:
    return [e.action for e in response.context["page"]]


def test_it_lists_entries_newest_first(viewer_client):
    entry("cohort.create", "alice")
    entry("cohort.update", "alice")
    assert actions(viewer_client.get("/audit/", {"actor": "alice"})) == [
        "cohort.update",
        "cohort.create",
    ]


def test_it_filters_by_actor_action_and_object_type(viewer_client):
    entry("cohort.create", "alice")
    entry("rollout.start", "oscar", "rollouts.rollout")
    entry("rollout.pause", "oscar", "rollouts.rollout")
    assert actions(viewer_client.get("/audit/", {"actor": "OSC"})) == [
        "rollout.pause",
        "rollout.start",
    ]
    assert actions(viewer_client.get("/audit/", {"action": "rollout.start"})) == ["rollout.start"]
    assert actions(viewer_client.get("/audit/", {"object_type": "fleet.cohort"})) == ["cohort.create"]


def test_it_reads_dates_as_days_in_the_viewers_time_zone(viewer_client):
    # 23:30 UTC on 1 March is already 2 March in Berlin.
    entry("late", "alice", at=datetime(2026, 3, 1, 23, 30, tzinfo=ZoneInfo("UTC")))
    entry("early", "alice", at=datetime(2026, 3, 1, 8, 0, tzinfo=ZoneInfo("UTC")))
    berlin = {"since": "2026-03-02", "until": "2026-03-02", "tz": "Europe/Berlin"}
    assert actions(viewer_client.get("/audit/", berlin)) == ["late"]
    utc = {"since": "2026-03-01", "until": "2026-03-01"}
    assert actions(viewer_client.get("/audit/", utc)) == ["late", "early"]


def test_it_rejects_a_range_that_ends_before_it_starts(viewer_client):
    entry("cohort.create", "alice")
    response = viewer_client.get("/audit/", {"since": "2026-03-02", "until": "2026-03-01"})
    assert response.context["form"].errors["until"]
    assert 'role="alert"' in response.content.decode()


def test_it_pages_and_keeps_the_filters_in_the_pager_links(viewer_client):
    for _ in range(55):
        entry("device.enroll", "device:x", "fleet.device")
    entry("cohort.create", "alice")
    response = viewer_client.get("/audit/", {"action": "device.enroll"})
    assert len(response.context["page"]) == 50
    assert "?action=device.enroll&amp;page=2" in response.content.decode()
    assert len(viewer_client.get("/audit/", {"action": "device.enroll", "page": 2}).context["page"]) == 5


def test_it_refuses_users_without_a_role(outsider_client):
    assert outsider_client.get("/audit/").status_code == 403
