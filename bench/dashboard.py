"""Dashboard at scale: server time of the fleet overview, the rollout detail and the cohort preview.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetbench_1m REDIS_URL=redis://127.0.0.1:6379/10 \
        .venv/bin/python bench/dashboard.py --devices 1000000 --repeat 200

Seeds the fleet up to --devices with bench/seed.py (once: the devices are kept), creates the
bench cohorts and a running rollout through the services and the engine (two waves, tens of
thousands of deployments in mixed states; once), then requests each page --repeat times
in-process through Django's test Client with the production settings (DEBUG off) and reports
server time p50/p95/max per page. Prints progress, then one JSON line.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

try:
    from _django import ROOT, setup
except ImportError:  # imported as bench.dashboard
    from bench._django import ROOT, setup

ROLLOUT_NAME = "bench: os 40.1"
COHORTS = {
    "bench canary": 'tag:canary',
    "bench eu-west rpi5": 'region == "eu-west" and hw == "rpi5"',
    "bench us": 'region in ("us-east", "us-west")',
}
# What an admin types in the cohort editor: broad, narrow, and one that matches nothing.
PREVIEW_FILTERS = [
    'region == "eu-west"',
    'region == "ap-south" and hw == "imx8" and version.os == "39.2"',
    'customer == "cust-7" and tag:canary',
    'site == "site-9999"',
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def production_settings() -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="fleetweb.settings.prod",
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "bench-" + "x" * 60),
        DJANGO_SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
    )


def seed(devices: int) -> int:
    from apps.fleet.models import Device

    have = Device.objects.filter(uid__startswith="bench-").count()
    if have < devices:
        log(f"seeding {devices - have:,} devices (have {have:,})…")
        subprocess.run([sys.executable, str(ROOT / "bench" / "seed.py"), "--devices", str(devices - have)],
                       check=True, env=dict(os.environ))
    return Device.objects.count()


def bench_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True})
    return user


def ensure_rollout(user):
    """The bench rollout: wave 1 the canaries (all), wave 2 half of eu-west rpi5, wave 3 the rest."""
    from django.db import connection

    from apps.fleet.models import Cohort, Component, Release
    from apps.fleet.services import cohort_create, release_create
    from apps.rollouts.engine import rollout_evaluate
    from apps.rollouts.models import Rollout, Wave
    from apps.rollouts.services import rollout_create, rollout_start, rollout_submit

    cohorts = {}
    for name, text in COHORTS.items():
        cohorts[name] = Cohort.objects.filter(name=name).first() or cohort_create(
            name=name, filter_text=text, actor=user)
    rollout = Rollout.objects.filter(name=ROLLOUT_NAME).first()
    if rollout is not None and rollout.current_wave >= 1:
        return rollout
    if rollout is None:
        os_component = Component.objects.get(name="os")
        release = Release.objects.filter(component=os_component, version="40.1").first() or release_create(
            component=os_component, version="40.1", actor=user)
        rollout = rollout_create(name=ROLLOUT_NAME, releases=[release], actor=user, waves=[
            {"cohort": cohorts["bench canary"], "size_kind": "percent", "size_value": 100,
             "success_min_percent": 80},
            {"cohort": cohorts["bench eu-west rpi5"], "size_kind": "percent", "size_value": 50},
            {"cohort": None, "size_kind": "percent", "size_value": 100},
        ])
        rollout_submit(rollout=rollout, actor=user)
        rollout_start(rollout=rollout, actor=user)
    started = time.monotonic()
    log("engine: starting wave 1 (choosing the canaries)…")
    rollout_evaluate(rollout.pk)
    _mix_states(rollout, Wave.objects.get(rollout=rollout, index=0), succeeded=0.85, failed=0.02)
    log(f"engine: wave 1 done in {time.monotonic() - started:.0f}s; advancing to wave 2…")
    rollout_evaluate(rollout.pk)
    wave2 = Wave.objects.get(rollout=rollout, index=1)
    _mix_states(rollout, wave2, succeeded=0.3, failed=0.01)
    rollout_evaluate(rollout.pk)  # refreshes the maintained progress counts
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rollouts_deployment")
    rollout.refresh_from_db()
    log(f"rollout {rollout.pk}: wave {rollout.current_wave + 1} running, "
        f"{rollout.deployments.count():,} deployments, {time.monotonic() - started:.0f}s")
    return rollout


def _mix_states(rollout, wave, *, succeeded: float, failed: float) -> None:
    """Bench data only: move a wave's deployments through their lifecycle in bulk (SQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE rollouts_deployment SET
              state = CASE WHEN (id %% 1000) < %s THEN 'succeeded'
                           WHEN (id %% 1000) < %s THEN 'failed'
                           WHEN (id %% 1000) < %s THEN 'installing'
                           ELSE 'downloading' END,
              released_at = now() - interval '10 minutes', first_seen_at = now() - interval '9 minutes',
              finished_at = CASE WHEN (id %% 1000) < %s THEN now() - interval '1 minute' END,
              error_code = CASE WHEN (id %% 1000) >= %s AND (id %% 1000) < %s THEN 'install_failed' ELSE '' END
            WHERE wave_id = %s
            """,
            [int(succeeded * 1000), int((succeeded + failed) * 1000), int((succeeded + failed) * 1000) + 50,
             int((succeeded + failed) * 1000), int(succeeded * 1000), int((succeeded + failed) * 1000), wave.pk],
        )
        cursor.execute("UPDATE fleet_device SET last_seen = now() WHERE id IN "
                       "(SELECT device_id FROM rollouts_deployment WHERE wave_id = %s)", [wave.pk])


def measure(client, url: str, repeat: int, *, warmup: int = 3) -> dict:
    for _ in range(warmup):
        response = client.get(url, secure=True)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, secure=True)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    times.sort()
    return {
        "url": url,
        "n": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    production_settings()
    setup("fleetweb.settings.prod")
    from urllib.parse import urlencode

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client, override_settings
    from django.urls import reverse

    if connection.vendor != "postgresql":
        raise SystemExit("bench/dashboard.py needs PostgreSQL (set DATABASE_URL)")
    try:
        call_command("migrate", verbosity=0)
    except Exception as exc:  # noqa: BLE001 - a half-applied migration elsewhere must not stop a measurement
        log(f"migrate failed ({exc}); measuring on the schema as it is")
    total = seed(args.devices)
    user = bench_user()
    rollout = ensure_rollout(user)
    deployments = rollout.deployments.count()
    # The manifest storage needs collectstatic; its lookup is a dict read, so plain storage costs the same.
    override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
    client = Client()
    client.force_login(user)
    pages = {
        "overview": reverse("dashboard:overview"),
        "rollout_detail": reverse("dashboard:rollout", args=[rollout.pk]),
    }
    results = {}
    # The machine is shared: a trivial view measured in the same run shows how loaded it was.
    log(f"reference: /healthz, {args.repeat} requests…")
    results["reference_trivial_view"] = measure(client, reverse("healthz"), args.repeat)
    for name, url in pages.items():
        log(f"{name}: {args.repeat} requests…")
        results[name] = measure(client, url, args.repeat)
        log(f"  p50 {results[name]['p50_ms']} ms  p95 {results[name]['p95_ms']} ms")
    log(f"cohort_preview: {args.repeat} requests over {len(PREVIEW_FILTERS)} filters…")
    per_filter = max(1, args.repeat // len(PREVIEW_FILTERS))
    previews = [measure(client, reverse("dashboard:cohort_preview") + "?" + urlencode({"filter": text}), per_filter)
                for text in PREVIEW_FILTERS]
    results["cohort_preview"] = {
        "n": sum(p["n"] for p in previews),
        "p50_ms": max(p["p50_ms"] for p in previews),
        "p95_ms": max(p["p95_ms"] for p in previews),
        "max_ms": max(p["max_ms"] for p in previews),
        "per_filter": previews,
    }
    log(f"  worst filter p50 {results['cohort_preview']['p50_ms']} ms  p95 {results['cohort_preview']['p95_ms']} ms")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout
    print(json.dumps({
        "bench": "dashboard", "devices": total, "deployments": deployments, "repeat": args.repeat,
        "settings": "fleetweb.settings.prod (DEBUG off), in-process test Client",
        **results,
        "target_p95_ms": 100,
        "meets_target": all(results[k]["p95_ms"] < 100 for k in ("overview", "rollout_detail", "cohort_preview")),
        "machine": f"{platform.machine()} {os.cpu_count()} cores", "commit": commit.strip(),
        "date": time.strftime("%Y-%m-%d"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
