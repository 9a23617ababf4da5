"""alert_raise and alert_acknowledge: dedupe, one ack under concurrency, audit, events after commit."""

import threading
import time

import pytest
from django.db import connections, transaction

from apps.alerts.models import Alert
from apps.alerts.services import AlertError, alert_acknowledge, alert_raise
from apps.audit.models import AuditEntry
from apps.live.broadcast import capture_events


def _raise(**kw):
    return alert_raise(**{"kind": "cohort_silent", "severity": "warning", "title": "eu-north quiet", **kw})


@pytest.mark.django_db
def test_it_returns_the_open_alert_for_a_repeated_dedupe_key(django_capture_on_commit_callbacks):
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        first = _raise(dedupe_key="cohort_silent:7", evidence={"silent": 41})
        again = _raise(dedupe_key="cohort_silent:7", evidence={"silent": 45})
    assert again.pk == first.pk and Alert.objects.count() == 1
    assert again.evidence == {"silent": 41}
    assert [e["kind"] for e in events] == ["alert.raised"]


@pytest.mark.django_db
def test_it_never_folds_alerts_without_a_dedupe_key():
    _raise()
    _raise()
    assert Alert.objects.count() == 2


@pytest.mark.django_db
def test_it_raises_a_new_alert_once_the_open_one_is_acknowledged(viewer_user):
    first = _raise(dedupe_key="cohort_silent:7")
    alert_acknowledge(alert=first, actor=viewer_user)
    second = _raise(dedupe_key="cohort_silent:7")
    assert second.pk != first.pk and second.is_open


@pytest.mark.django_db
def test_it_refuses_an_unknown_kind_or_severity():
    with pytest.raises(AlertError):
        _raise(kind="meteor")
    with pytest.raises(AlertError):
        _raise(severity="apocalyptic")
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_it_records_who_acknowledged_and_audits_it(alert, viewer_user):
    alert = alert_acknowledge(alert=alert, actor=viewer_user, note="  looking at it  ")
    assert (alert.acknowledged_by, alert.ack_note, alert.is_open) == (viewer_user, "looking at it", False)
    entry = AuditEntry.objects.get(action="alert.acknowledge")
    assert (entry.actor, entry.object_type, entry.object_id, entry.reason) == (
        viewer_user, "alerts.alert", str(alert.pk), "looking at it")


@pytest.mark.django_db
def test_it_keeps_the_first_ack_when_acknowledged_twice(alert, viewer_user, operator_user):
    alert_acknowledge(alert=alert, actor=viewer_user)
    late = alert_acknowledge(alert=Alert.objects.get(pk=alert.pk), actor=operator_user, note="mine")
    assert (late.acknowledged_by, late.ack_note) == (viewer_user, "")
    assert AuditEntry.objects.filter(action="alert.acknowledge").count() == 1


@pytest.mark.django_db
def test_it_refuses_an_ack_without_a_person(alert):
    with pytest.raises(AlertError):
        alert_acknowledge(alert=alert, actor=None)


@pytest.mark.django_db
def test_it_sends_the_ack_only_after_commit(alert, viewer_user, django_capture_on_commit_callbacks):
    with capture_events() as events:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            alert_acknowledge(alert=alert, actor=viewer_user)
        assert events == []  # not before commit
        for callback in callbacks:
            callback()
    assert len(events) == 1
    assert events[0]["kind"] == "alert.acknowledged"
    row = events[0]["alert"]
    assert (row["id"], row["kind"], row["open"], row["acknowledged_by"]) == (
        alert.pk, "other", False, viewer_user.username)
    assert row["acknowledged_at"]


@pytest.mark.django_db
def test_it_sends_nothing_when_the_ack_rolls_back(alert, viewer_user, django_capture_on_commit_callbacks):
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            alert_acknowledge(alert=alert, actor=viewer_user)
            raise RuntimeError("the caller failed after the ack")
    assert events == []
    assert Alert.objects.get(pk=alert.pk).is_open


def _someone_waits_on_a_lock() -> bool:
    import psycopg
    from django.db import connection

    settings_dict = connection.settings_dict
    with psycopg.connect(dbname=settings_dict["NAME"], user=settings_dict["USER"], host=settings_dict["HOST"],
                         port=settings_dict["PORT"] or 5432, password=settings_dict["PASSWORD"] or None,
                         autocommit=True) as other:
        return other.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE NOT l.granted AND a.datname = current_database()"
        ).fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_it_records_only_the_first_of_two_simultaneous_acks(viewer_user, operator_user):
    alert = _raise(dedupe_key="cohort_silent:7")
    second: list[Alert] = []

    def ack_as_operator():
        try:
            second.append(alert_acknowledge(alert=Alert.objects.get(pk=alert.pk), actor=operator_user))
        finally:
            connections.close_all()

    with transaction.atomic():
        alert_acknowledge(alert=alert, actor=viewer_user)
        other = threading.Thread(target=ack_as_operator)
        other.start()
        # Wait until the operator's ack is blocked on the row lock this transaction holds
        # (seen in pg_locks from a separate connection): the two acks really overlap.
        deadline = time.monotonic() + 10
        while not _someone_waits_on_a_lock():
            assert other.is_alive(), "the second ack finished without waiting for the first"
            assert time.monotonic() < deadline, "the second ack never waited on the row lock"
            time.sleep(0.02)
    other.join(timeout=10)
    assert second and second[0].acknowledged_by_id == viewer_user.pk
    assert Alert.objects.get(pk=alert.pk).acknowledged_by_id == viewer_user.pk
    assert AuditEntry.objects.filter(action="alert.acknowledge").count() == 1
