"""End to end: simulated devices over real HTTP (gunicorn), the engine in a real Celery worker.

A fleet simulator (apps/simulator) runs 60 devices against the device API served by gunicorn
on the test database; a real Celery worker on the real Redis broker runs the engine ticks.
A release the simulator makes crash twenty times as often halts by itself with readable
evidence; a healthy release completes every wave.
"""

import asyncio
import threading
import time

import pytest

from apps.fleet.models import Cohort, Device
from apps.fleet.services import cohort_create, component_create, enrollment_secret_create, release_create
from apps.rollouts.models import Deployment, Rollout, Wave
from apps.rollouts.services import rollout_create, rollout_start, rollout_submit
from apps.rollouts.tasks import engine_tick
from apps.simulator.fleetsim import FleetSimulator
from apps.simulator.profiles import DEFAULT_PROFILE
from tests.processes import celery_worker, web_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

DEVICES = 60
# Devices report every 10 simulated minutes; time runs 500x faster (a report every 1.2 s).
INTERVAL_S, TIME_SCALE = 600, 0.002
QUIET = {
    "install": {"install_fail": 0.0, "fallback": 0.0, "install_s": [5, 20], "download_s": [2, 5],
                "reboot_s": [5, 10]},
    "releases": {"os=40.0": {"install_fail": 0.0, "fallback": 0.0, "install_s": [5, 20]}},
}


class RunningSimulator:
    """The simulator's asyncio loop in a background thread, stopped on exit."""

    def __init__(self, simulator: FleetSimulator):
        self.simulator = simulator
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            self.ready.set()
            await self.simulator.run(stop=self.stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self.simulator

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)
        assert self.error is None, self.error


def describe() -> str:
    from django.db.models import Count

    lines = []
    for rollout in Rollout.objects.all():
        counts = dict(Deployment.objects.filter(rollout=rollout).values_list("state").annotate(n=Count("id")))
        waves = list(rollout.waves.values_list("index", "state", "planned_devices"))
        errors = list(Deployment.objects.filter(rollout=rollout, state="failed").values_list("error_detail")[:5])
        lines.append(f"{rollout.name}: {rollout.state} {rollout.halt_reason} waves={waves} deployments={counts} "
                     f"errors={errors}")
    return "; ".join(lines)


def wait_for(condition, what: str, timeout: float = 120.0, tick: bool = False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick:
            engine_tick.delay().get(timeout=60)
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {describe()}")


@pytest.fixture
def catalogue(admin_user):
    for position, (name, versions) in enumerate(DEFAULT_PROFILE["versions"].items()):
        component = component_create(name=name, kind="os" if name == "os" else "app", position=position,
                                     actor=admin_user)
        for version in versions:
            release_create(component=component, version=version, actor=admin_user)
    cohort_create(name="fleet", filter_text="has:region", actor=admin_user)
    _, secret = enrollment_secret_create(name="sim", actor=admin_user)
    return secret


def plan(operator_user, *, gate: dict) -> Rollout:
    from apps.fleet.models import Release

    rollout = rollout_create(
        name="os 40.0", releases=[Release.objects.get(component__name="os", version="40.0")], actor=operator_user,
        settle_s=2,
        waves=[
            {"cohort": Cohort.objects.get(name="fleet"), "size_kind": "percent", "size_value": 50,
             "min_soak_s": 3, "success_min_count": 10, "success_min_percent": 80, "spike_gate": gate},
            {"cohort": None, "size_kind": "percent", "size_value": 100, "success_min_count": 1,
             "success_min_percent": 80, "spike_gate": gate},
        ],
    )
    rollout_submit(rollout=rollout, actor=operator_user)
    rollout_start(rollout=rollout, actor=operator_user, reason="integration test")
    return rollout


def simulator(url: str, secret: str, profile: dict) -> FleetSimulator:
    return FleetSimulator(base_url=url, devices=DEVICES, enrollment_secret=secret, profile=profile,
                          interval_s=INTERVAL_S, time_scale=TIME_SCALE, concurrency=20, seed=7)


def test_it_halts_a_release_the_simulated_fleet_crashes_on(catalogue, operator_user):
    bad = {**QUIET, "releases": {"os=40.0": {**QUIET["releases"]["os=40.0"], "crash_factor": 20.0}}}
    with web_server(kind="gunicorn", name="sim-bad") as url, celery_worker(name="sim-bad"), \
            RunningSimulator(simulator(url, catalogue, bad)) as sim:
        wait_for(lambda: Device.objects.filter(last_seq__gte=1).count() == DEVICES, "the fleet to check in")
        rollout = plan(operator_user, gate={"metrics": ["crashes"]})
        wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == Rollout.State.HALTED, "a halt", tick=True)
        stats = sim.stats
    rollout.refresh_from_db()
    assert rollout.halt_reason.startswith("Wave 1: crash rate")
    assert "updated devices vs" in rollout.halt_reason and "baseline devices" in rollout.halt_reason
    evidence = rollout.halt_evidence
    assert evidence["gate"] == "spike" and evidence["ratio"] > 1.75 and evidence["first_failing_report_at"]
    # The rest of the fleet never got the bad release.
    assert rollout.waves.get(index=1).state == Wave.State.PENDING
    assert not Deployment.objects.filter(rollout=rollout, wave__index=1).exclude(state="pending").exists()
    assert stats.installs_ok <= DEVICES // 2 and stats.crashes_reported > 0


def test_it_completes_a_healthy_release_across_the_simulated_fleet(catalogue, operator_user):
    with web_server(kind="gunicorn", name="sim-good") as url, celery_worker(name="sim-good"), \
            RunningSimulator(simulator(url, catalogue, QUIET)):
        wait_for(lambda: Device.objects.filter(last_seq__gte=1).count() == DEVICES, "the fleet to check in")
        rollout = plan(operator_user, gate={"metrics": ["crashes"]})
        wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == Rollout.State.COMPLETED, "completion",
                 timeout=180, tick=True)
    rollout.refresh_from_db()
    assert list(rollout.waves.values_list("state", flat=True)) == [Wave.State.PASSED, Wave.State.PASSED]
    succeeded = Deployment.objects.filter(rollout=rollout, state=Deployment.State.SUCCEEDED).count()
    assert succeeded >= DEVICES * 0.8
    assert not Deployment.objects.filter(rollout=rollout, state=Deployment.State.FAILED).exists()
    # The gates let the rollout complete at 80%: the last devices were still settling then.
    assert Device.objects.filter(installed__os="40.0").count() == DEVICES
