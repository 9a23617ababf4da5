"""Run a simulated device fleet against a fleetweb server's device API.

Prints progress every few seconds (once a minute with --quiet) and, when it stops (duration over,
Ctrl-C or SIGTERM), one JSON line with its final counters on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.simulator.fleetsim import FleetSimulator, SimStats
from apps.simulator.profiles import (
    DEFAULT_PROFILE,
    ProfileError,
    profile_check,
    profile_load,
    profile_mark_bad,
    profile_mark_sick_pairing,
)

PROGRESS_EVERY_S = 5.0
QUIET_PROGRESS_EVERY_S = 60.0


class Command(BaseCommand):
    help = "Simulate a fleet of devices checking in to fleetweb (native device API v1)."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="fleetweb base URL, e.g. http://127.0.0.1:8000")
        parser.add_argument("--devices", type=int, default=300)
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument("--secret", help="enrollment secret")
        secret.add_argument("--secret-file", help="file holding the enrollment secret")
        parser.add_argument(
            "--interval", type=float, default=None, help="check-in interval in seconds (default: what the server says)"
        )
        parser.add_argument("--profile", help="JSON profile merged over the built-in default")
        parser.add_argument(
            "--bad",
            action="append",
            default=[],
            metavar="COMPONENT=VERSION",
            help="mark a release bad: 10× crash rate, 30%% install failures (repeatable)",
        )
        parser.add_argument(
            "--sick-pairing",
            action="append",
            default=[],
            metavar="COMPONENT=VERSION@COMPONENT=VERSION",
            help="the first release crashes only on the second, e.g. vision=1.4@os=39.2 (repeatable)",
        )
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
        parser.add_argument("--state-file", default=str(Path(settings.DATA_DIR) / "simulator-state.json"))
        parser.add_argument(
            "--time-scale", type=float, default=1.0, help="multiply all simulated durations (0.1: ten times faster)"
        )
        parser.add_argument("--prefix", default="sim", help="device ids are PREFIX-000000, PREFIX-000001, …")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--concurrency", type=int, default=200, help="open connections at most")
        parser.add_argument("--download", action="store_true", help="really download artifacts when installing")
        parser.add_argument("--quiet", action="store_true", help="progress once a minute only")
        parser.add_argument("--progress-s", type=float, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        secret = options["secret"]
        if options["secret_file"]:
            try:
                secret = Path(options["secret_file"]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"cannot read the enrollment secret: {exc}") from exc
        if not secret:
            raise CommandError("the enrollment secret is empty")
        try:
            profile = profile_load(options["profile"]) if options["profile"] else profile_check(DEFAULT_PROFILE)
            for spec in options["bad"]:
                profile = profile_mark_bad(profile, spec)
            for spec in options["sick_pairing"]:
                profile = profile_mark_sick_pairing(profile, spec)
            simulator = FleetSimulator(
                base_url=options["url"],
                devices=options["devices"],
                enrollment_secret=secret,
                profile=profile,
                interval_s=options["interval"],
                state_file=options["state_file"],
                prefix=options["prefix"],
                seed=options["seed"],
                concurrency=options["concurrency"],
                time_scale=options["time_scale"],
                download=options["download"],
            )
        except (ProfileError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="simulate_fleet: %(message)s")
        every = options["progress_s"] or (QUIET_PROGRESS_EVERY_S if options["quiet"] else PROGRESS_EVERY_S)
        try:
            stats = asyncio.run(self._main(simulator, duration_s=options["duration"], every=every))
        except ValueError as exc:  # an unreadable state file
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(stats.as_dict(), sort_keys=True))
        self.stdout.flush()

    async def _main(self, simulator: FleetSimulator, *, duration_s: float | None, every: float) -> SimStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # The demo launcher stops us with SIGTERM to our process group: finish cleanly (state saved).
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        reporter = asyncio.create_task(self._report(simulator, every))
        try:
            return await simulator.run(duration_s=duration_s, stop=stop)
        finally:
            reporter.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _report(self, simulator: FleetSimulator, every: float) -> None:
        stats = simulator.stats
        last_checkins, last_t = stats.checkins, time.monotonic()
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            rate = (stats.checkins - last_checkins) / max(now - last_t, 1e-9)
            last_checkins, last_t = stats.checkins, now
            active = stats.enrolled + stats.reused
            errors = {**stats.checkin_errors, **{f"enroll {k}": v for k, v in stats.enroll_errors.items()}}
            self.stdout.write(
                f"simulate_fleet: devices {active}/{simulator.device_count} (enrolled {stats.enrolled}, "
                f"skipped {stats.enroll_skipped}) · {rate:.1f} check-ins/s · installs ok {stats.installs_ok} "
                f"failed {stats.installs_failed} fallback {stats.fallbacks} · crashes {stats.crashes_reported} · "
                f"errors {json.dumps(errors, sort_keys=True) if errors else 'none'}"
            )
            self.stdout.flush()
