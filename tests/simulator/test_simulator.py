"""The fleet simulator against a live fleetweb server (real HTTP, real PostgreSQL), plus its health model."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models import Count, Max, Sum
from django.utils import timezone

from apps.fleet.models import Artifact, Combination, Device, HealthReport, Release
from apps.fleet.services import component_create, enrollment_secret_create, release_create
from apps.rollouts.models import Deployment, Rollout, Wave
from apps.simulator.fleetsim import FleetSimulator, HealthModel, SimStats
from apps.simulator.profiles import (
    DEFAULT_PROFILE,
    ProfileError,
    profile_check,
    profile_mark_bad,
    profile_merge,
)
from tests.factories import DeviceFactory

live = pytest.mark.django_db(transaction=True)
WAIT_S = 20.0  # upper bound only: every wait below ends as soon as its condition holds

# Installs are quick and always work unless a test says otherwise.
FAST_INSTALLS = {
    "install": {
        "install_fail": 0.0,
        "fallback": 0.0,
        "download_s": [0, 0.5],
        "install_s": [0.5, 1],
        "reboot_s": [0.5, 1],
    },
    "releases": {"os=40.0": {"install_fail": 0.0, "fallback": 0.0, "install_s": [0.5, 1]}},
}


@pytest.fixture
def catalogue(db):
    for position, (name, kind, reboot) in enumerate(
        (("os", "os", True), ("agent", "app", False), ("vision", "app", False))
    ):
        component = component_create(name=name, kind=kind, requires_reboot=reboot, position=position, actor="tests")
        for version in DEFAULT_PROFILE["versions"][name]:
            release_create(component=component, version=version, actor="tests")


@pytest.fixture
def secret(db) -> str:
    _, plain = enrollment_secret_create(name="simulator-tests", actor="tests")
    return plain


def simulate(sim: FleetSimulator, until) -> SimStats:
    """Run the simulator until `until(sim)` holds (checked after every check-in and feedback), then stop it."""

    async def main() -> SimStats:
        stop = asyncio.Event()
        runner = asyncio.create_task(sim.run(stop=stop))
        try:
            await sim.wait_until(until, timeout=WAIT_S)
        finally:
            stop.set()
        return await runner

    return asyncio.run(main())


def checked_in(times: int):
    return lambda sim: all(d.reported and d.seq >= times for d in sim.devices)


@live
def test_it_enrolls_a_fleet_that_checks_in_with_the_profile_attributes(live_server, catalogue, secret, tmp_path):
    sim = FleetSimulator(
        base_url=live_server.url,
        devices=30,
        enrollment_secret=secret,
        interval_s=0.5,
        state_file=str(tmp_path / "state.json"),
        concurrency=8,
        seed=7,
    )
    stats = simulate(sim, lambda s: s.stats.checkins >= 90 and all(d.reported for d in s.devices))

    assert stats.enrolled == 30 and stats.checkin_errors == {} and stats.enroll_errors == {}
    devices = list(Device.objects.all())
    assert sorted(d.uid for d in devices) == [f"sim-{i:06d}" for i in range(30)]
    for device in devices:
        assert device.hw_model in DEFAULT_PROFILE["hardware"]
        assert device.attributes["region"] in DEFAULT_PROFILE["regions"]
        assert device.attributes["site"].startswith(device.attributes["region"] + "-site-")
        assert device.attributes["customer"] in DEFAULT_PROFILE["customers"]
        assert set(device.tags) <= {"canary"}
        assert set(device.installed) == {"os", "agent", "vision"}
        # Versions weighted 0 in the profile (the ones demos roll out) are on no device yet.
        assert device.installed["os"] != "40.0"
    assert sum(d.checkin_count for d in devices) == HealthReport.objects.count() >= stats.checkins
    assert Combination.objects.aggregate(total=Sum("device_count"))["total"] == 30
    for device in devices:
        assert device.combination.key == Combination.key_for(device.installed)
        assert device.last_seq == HealthReport.objects.filter(device=device).aggregate(m=Max("seq"))["m"]
    assert HealthReport.objects.filter(interval_s__lt=1).count() == 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["clean"] is True and len(state["devices"]) == 30
    assert oct((tmp_path / "state.json").stat().st_mode)[-3:] == "600"


@live
def test_it_reuses_its_devices_after_a_restart_and_continues_their_sequence(live_server, catalogue, secret, tmp_path):
    state_file = str(tmp_path / "state.json")
    options = {
        "base_url": live_server.url,
        "devices": 10,
        "enrollment_secret": secret,
        "interval_s": 0.3,
        "state_file": state_file,
        "concurrency": 4,
    }
    first = simulate(FleetSimulator(**options), checked_in(2))
    before = dict(Device.objects.values_list("uid", "last_seq"))
    reports_before = HealthReport.objects.count()

    again = FleetSimulator(**options)
    second = simulate(again, lambda s: all(d.reported and d.seq >= before[d.uid] + 2 for d in s.devices))

    assert first.enrolled == 10
    assert second.enrolled == 0 and second.reused == 10 and second.enroll_errors == {}
    assert second.checkin_errors == {}
    assert Device.objects.count() == 10
    for uid, last_seq in Device.objects.values_list("uid", "last_seq"):
        assert last_seq >= before[uid] + 2
        # Nothing the restarted simulator sent was taken for a replay of an earlier report.
        assert HealthReport.objects.filter(device__uid=uid, seq__gt=before[uid]).count() >= 2
    assert HealthReport.objects.count() == reports_before + second.checkins
    assert not HealthReport.objects.values("device", "seq").annotate(n=Count("id")).filter(n__gt=1).exists()


@live
def test_it_skips_a_device_the_server_knows_but_its_state_file_does_not(live_server, catalogue, secret, tmp_path):
    DeviceFactory(uid="sim-000001")  # enrolled elsewhere: it has a token this simulator does not know
    sim = FleetSimulator(
        base_url=live_server.url,
        devices=3,
        enrollment_secret=secret,
        interval_s=0.3,
        state_file=str(tmp_path / "state.json"),
        concurrency=2,
    )
    stats = simulate(sim, lambda s: all(d.reported for d in s.devices if not d.disabled) and s.stats.enroll_skipped)

    assert stats.enrolled == 2 and stats.enroll_skipped == 1 and stats.enroll_errors == {"409": 1}
    assert Device.objects.get(uid="sim-000001").checkin_count == 0
    assert "sim-000001" not in json.loads((tmp_path / "state.json").read_text())["devices"]


def _deploy(devices: list[Device], to_versions: dict[str, str], **deployment) -> list[Deployment]:
    rollout = Rollout.objects.create(
        name=f"to {to_versions}", state=Rollout.State.RUNNING, settle_s=0, started_at=timezone.now()
    )
    wave = Wave.objects.create(rollout=rollout, index=0, state=Wave.State.RUNNING, started_at=timezone.now())
    return [
        Deployment.objects.create(
            rollout=rollout,
            wave=wave,
            device=device,
            released_at=timezone.now(),
            to_versions=to_versions,
            from_versions={name: device.installed.get(name) for name in to_versions},
            **deployment,
        )
        for device in devices
    ]


@live
def test_it_installs_a_release_reports_progress_and_comes_back_on_the_new_version(
    live_server, catalogue, secret, tmp_path
):
    options = {
        "base_url": live_server.url,
        "devices": 8,
        "enrollment_secret": secret,
        "interval_s": 2.0,
        "state_file": str(tmp_path / "state.json"),
        "concurrency": 4,
        "time_scale": 0.1,
    }
    simulate(FleetSimulator(**options, profile=FAST_INSTALLS), checked_in(1))
    devices = list(Device.objects.order_by("uid"))
    upgraded = _deploy(devices[:3], {"os": "40.0"})
    failing = _deploy(devices[3:5], {"vision": "1.4"})
    canceled = _deploy(devices[5:6], {"agent": "2.5.0"}, cancel_requested=True)
    targets = {d.uid for d in devices[:3]}
    profile = profile_merge(
        FAST_INSTALLS, {"releases": {"vision=1.4": {"install_fail": 1.0, "retryable_fail_share": 1.0}}}
    )

    sim = FleetSimulator(**options, profile=profile)
    stats = simulate(
        sim,
        lambda s: (
            all(s.device(uid).reported.get("os") == "40.0" for uid in targets)
            and s.stats.installs_failed == 2
            and s.stats.installs_canceled == 1
        ),
    )

    for deployment in upgraded:
        deployment.refresh_from_db()
        # settle_s=0: the first check-in on the new version after "installed" makes it a success.
        assert deployment.state == Deployment.State.SUCCEEDED, deployment.error_detail
        assert deployment.progress == 100 and deployment.first_seen_at is not None
        device = Device.objects.get(pk=deployment.device_id)
        assert device.installed["os"] == "40.0"
        # The OS install rebooted the device, and it said so in a check-in.
        assert HealthReport.objects.filter(device=device).aggregate(r=Sum("reboots"))["r"] == 1
    for deployment in failing:
        deployment.refresh_from_db()
        assert deployment.state == Deployment.State.FAILED
        assert deployment.error_code in DEFAULT_PROFILE["error_codes"]["retryable"]
        assert Device.objects.get(pk=deployment.device_id).installed["vision"] != "1.4"
    canceled[0].refresh_from_db()
    assert canceled[0].state == Deployment.State.CANCELED
    assert stats.installs_ok == 3 and stats.fallbacks == 0
    # downloading 0, downloading 100, installing, installed|failed per install; one canceled.
    assert stats.feedbacks == 5 * 4 + 1
    assert Combination.objects.aggregate(total=Sum("device_count"))["total"] == 8


@live
def test_it_reports_an_ab_fallback_as_the_old_version(live_server, catalogue, secret, tmp_path):
    options = {
        "base_url": live_server.url,
        "devices": 2,
        "enrollment_secret": secret,
        "interval_s": 2.0,
        "state_file": str(tmp_path / "state.json"),
        "concurrency": 2,
        "time_scale": 0.1,
    }
    simulate(FleetSimulator(**options, profile=FAST_INSTALLS), checked_in(1))
    device = Device.objects.order_by("uid").first()
    old = device.installed["os"]
    (deployment,) = _deploy([device], {"os": "40.0"})
    profile = profile_merge(FAST_INSTALLS, {"releases": {"os=40.0": {"fallback": 1.0}}})

    sim = FleetSimulator(**options, profile=profile)
    # The fallback and its reboot are counted together; the reboot is reported by the next check-in.
    stats = simulate(sim, lambda s: s.stats.fallbacks == 1 and s.device(device.uid).pending_reboots == 0)

    deployment.refresh_from_db()
    assert stats.fallbacks == 1 and stats.installs_ok == 0
    assert deployment.state == Deployment.State.FAILED and deployment.error_code == "fallback"
    device.refresh_from_db()
    assert device.installed["os"] == old


@live
def test_it_downloads_artifacts_and_fails_an_install_on_a_bad_checksum(
    live_server, catalogue, secret, tmp_path, settings
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    image = os.urandom(200_000)
    Artifact.objects.create(
        release=Release.objects.get(component__name="os", version="40.0"),
        filename="os-40.0.img",
        file=ContentFile(image, name="os-40.0.img"),
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
    )
    Artifact.objects.create(
        release=Release.objects.get(component__name="vision", version="1.4"),
        filename="vision-1.4.tar",
        file=ContentFile(b"tampered", name="vision-1.4.tar"),
        size=8,
        sha256=hashlib.sha256(b"what was signed").hexdigest(),
    )
    options = {
        "base_url": live_server.url,
        "devices": 2,
        "enrollment_secret": secret,
        "interval_s": 2.0,
        "state_file": str(tmp_path / "state.json"),
        "concurrency": 2,
        "time_scale": 0.1,
        "profile": FAST_INSTALLS,
    }
    simulate(FleetSimulator(**options), checked_in(1))
    first, second = Device.objects.order_by("uid")
    (good,) = _deploy([first], {"os": "40.0"})
    (bad,) = _deploy([second], {"vision": "1.4"})

    sim = FleetSimulator(**options, download=True)
    stats = simulate(sim, lambda s: s.device(first.uid).reported.get("os") == "40.0" and s.stats.installs_failed)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.state == Deployment.State.SUCCEEDED
    assert bad.state == Deployment.State.FAILED and bad.error_code == "checksum_mismatch"
    assert stats.downloaded_bytes == len(image) + len(b"tampered")


@live
def test_it_stops_cleanly_on_sigterm_and_prints_its_stats(live_server, catalogue, secret, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "simulate_fleet",
            "--url",
            live_server.url,
            "--devices",
            "5",
            f"--secret={secret}",  # with "=": a secret may start with "-"
            "--interval",
            "0.5",
            "--state-file",
            str(tmp_path / "state.json"),
            "--concurrency",
            "2",
            "--progress-s",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
    )
    try:
        first = proc.stdout.readline()  # the first progress line: the simulator is up and working
        assert first.startswith("simulate_fleet: devices"), proc.stderr.read() if not first else first
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - started < 3, "it must stop within a couple of seconds"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["enrolled"] == 5 and stats["checkins"] >= 5
    assert Device.objects.filter(checkin_count__gt=0).count() == 5
    assert json.loads((tmp_path / "state.json").read_text())["clean"] is True


def test_it_makes_a_bad_release_crash_more_than_the_baseline():
    profile = profile_mark_bad(profile_check(profile_merge(DEFAULT_PROFILE, {})), "os=40.0")
    model = HealthModel(profile)
    healthy = {"os": "39.1", "agent": "2.4.1", "vision": "1.3"}
    bad = {**healthy, "os": "40.0"}
    rng = random.Random(1)
    crashes_healthy = sum(model.sample(healthy, 600, rng)["crashes"] for _ in range(2000))
    crashes_bad = sum(model.sample(bad, 600, rng)["crashes"] for _ in range(2000))
    # 2000 ten-minute intervals at 0.2/h: ~67 crashes; ten times the rate: ~667.
    assert 40 < crashes_healthy < 100
    assert crashes_bad > 5 * crashes_healthy
    assert profile["releases"]["os=40.0"]["install_fail"] == 0.3


def test_it_adds_a_combination_rate_only_when_every_version_matches():
    model = HealthModel(profile_check(profile_merge(DEFAULT_PROFILE, {})))
    base = model.rates({"os": "39.1", "vision": "1.4"})["crashes"]
    combo = model.rates({"os": "39.2", "vision": "1.4"})["crashes"]
    assert base == pytest.approx(0.2) and combo == pytest.approx(3.2)
    assert model.rates({"os": "39.2", "vision": "1.3"})["crashes"] == pytest.approx(0.2)


def test_it_refuses_a_malformed_release_spec_or_profile():
    with pytest.raises(ProfileError, match="COMPONENT=VERSION"):
        profile_mark_bad(DEFAULT_PROFILE, "os 40.0")
    with pytest.raises(ProfileError, match="install_fail"):
        profile_check(profile_merge(DEFAULT_PROFILE, {"releases": {"os=40.0": {"install_fail": 2}}}))


def test_it_honours_retry_after_in_seconds_and_as_a_date_with_some_spread():
    sim = FleetSimulator(base_url="http://127.0.0.1:9", devices=0, enrollment_secret="x")
    assert 5 <= sim._retry_after({"Retry-After": "5"}) <= 7.5
    soon = email.utils.format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    assert 25 <= sim._retry_after({"Retry-After": soon}) <= 46
    assert 5 <= sim._retry_after({}) <= 7.5  # no header: a polite default


def test_it_keeps_counting_when_the_server_is_unreachable(tmp_path):
    # Port 9 (discard) refuses connections: every request fails, nothing may crash.
    sim = FleetSimulator(base_url="http://127.0.0.1:9", devices=5, enrollment_secret="x", interval_s=0.2)
    stats = simulate(sim, lambda s: sum(s.stats.enroll_errors.values()) >= 5)
    assert set(stats.enroll_errors) == {"connection"} and stats.enrolled == 0
