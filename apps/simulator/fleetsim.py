"""The fleet simulator: many simulated devices talking to fleetweb's real device API (native JSON v1).

One process, one event loop. Devices are plain objects, not coroutines: a heap of next-due
times feeds a bounded queue that `concurrency` workers drain, and aiohttp's connector caps the
open connections at the same number. That keeps memory and scheduling cost per device small
enough for 100,000 devices. Only devices that are installing something get a task of their own.

Time: `time_scale` multiplies every *simulated* duration (check-in intervals, downloads,
installs, reboots). Health reports state simulated seconds, so rates per hour stay right at
any scale. Waits the *server* asks for (Retry-After) and error backoff are real time: they
protect a real server.

State file (JSON, written atomically): {"version": 1, "base_url", "clean": bool, "devices":
{uid: [token, seq, installed, poll_interval_s]}}. "clean" is false in the periodic saves and
true in the one on exit; a file that is not clean gets its sequence numbers moved ahead.

This module does not import Django: tests and the management command pass everything in.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .profiles import DEFAULT_PROFILE, profile_check, profile_merge

log = logging.getLogger("fleetsim")

STATE_VERSION = 1
# A simulator killed without saving may have sent more check-ins than the state file knows;
# jumping ahead keeps its sequence numbers above anything the server has accepted.
SEQ_GAP_AFTER_CRASH = 1000
MAX_BACKOFF_S = 60.0
FEEDBACK_ATTEMPTS = 5
DEFAULT_INTERVAL_S = 60.0
# On stop, requests already sent get this long to finish (the launcher allows a few seconds in all).
STOP_GRACE_S = 1.0


class SimulatorStopped(Exception):
    """`wait_until` gave up: the run ended first."""


@dataclass
class SimStats:
    """Counters of one simulator run (printed as one JSON line at the end)."""

    enrolled: int = 0
    checkins: int = 0
    checkin_errors: dict[str, int] = field(default_factory=dict)
    feedbacks: int = 0
    installs_ok: int = 0
    installs_failed: int = 0
    fallbacks: int = 0
    crashes_reported: int = 0
    # Beyond the counters above: devices restored from the state file, enrollments refused.
    reused: int = 0
    enroll_skipped: int = 0
    enroll_errors: dict[str, int] = field(default_factory=dict)
    feedback_errors: dict[str, int] = field(default_factory=dict)
    installs_canceled: int = 0
    reboots_reported: int = 0
    downloaded_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson sample: Knuth's method for small means, a rounded normal for large ones."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class Weighted:
    """A weighted pick from {name: weight}, with the cumulative table built once (it runs per device)."""

    def __init__(self, weights: dict[str, float]):
        self.names = [name for name, weight in weights.items() if weight > 0]
        self.cumulative = list(itertools.accumulate(weights[name] for name in self.names))

    def pick(self, rng: random.Random) -> str:
        return self.names[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


class HealthModel:
    """Crash and failed-health-check rates of a device from the versions it runs.

    rate = (baseline + Σ per-release extras + Σ matching combination extras) × Π per-release factors
    """

    METRICS = (("crashes", "crash"), ("failed_health_checks", "failed_checks"))

    def __init__(self, profile: dict[str, Any]):
        self.baseline = profile.get("baseline", {})
        self.releases: dict[tuple[str, str], dict[str, Any]] = {}
        for spec, settings in profile.get("releases", {}).items():
            component, _, version = spec.partition("=")
            self.releases[(component, version)] = settings
        self.combinations = [(tuple(sorted(c["match"].items())), c) for c in profile.get("combinations", [])]
        self._cache: dict[tuple, dict[str, float]] = {}

    def rates(self, installed: dict[str, str]) -> dict[str, float]:
        """Per-hour rates {"crashes": x, "failed_health_checks": y} for a set of installed versions."""
        key = tuple(sorted(installed.items()))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rates: dict[str, float] = {}
        for metric, stem in self.METRICS:
            rate = float(self.baseline.get(f"{stem}_per_hour", 0.0))
            factor = 1.0
            for item in installed.items():
                settings = self.releases.get(item)
                if settings:
                    rate += float(settings.get(f"{stem}_per_hour", 0.0))
                    factor *= float(settings.get(f"{stem}_factor", 1.0))
            for match, settings in self.combinations:
                if all(installed.get(name) == version for name, version in match):
                    rate += float(settings.get(f"{stem}_per_hour", 0.0))
            rates[metric] = rate * factor
        # The number of distinct combinations is small, so this cache stays small too.
        self._cache[key] = rates
        return rates

    def sample(self, installed: dict[str, str], interval_s: float, rng: random.Random) -> dict[str, int]:
        """Counters for one interval: Poisson(rate × hours) per metric."""
        hours = interval_s / 3600.0
        return {metric: poisson(rng, rate * hours) for metric, rate in self.rates(installed).items()}


class SimDevice:
    """One simulated device. Plain slots: there may be 100,000 of them."""

    __slots__ = (
        "attributes",
        "busy",
        "disabled",
        "failures",
        "finished",
        "gen",
        "hw_model",
        "index",
        "installed",
        "installs",
        "last_ok",
        "lock",
        "pending_reboots",
        "reenrolling",
        "reported",
        "seq",
        "server_interval",
        "soon_at",
        "tags",
        "token",
        "uid",
    )

    def __init__(self, index: int, uid: str):
        self.index = index
        self.uid = uid
        self.hw_model = ""
        self.attributes: dict[str, Any] = {}
        self.tags: list[str] = []
        self.token: str | None = None
        self.seq = 0
        self.installed: dict[str, str] = {}
        # What the last accepted check-in reported (tests wait on it).
        self.reported: dict[str, str] = {}
        self.server_interval: float | None = None
        self.gen = 0
        self.busy = False
        self.soon_at: float | None = None
        self.last_ok: float | None = None
        self.pending_reboots = 0
        self.failures = 0
        self.disabled = False
        # deployment id → install task (only while installing).
        self.installs: dict[int, asyncio.Task] | None = None
        # deployment id → "installed" | "failed" | "canceled" | "gone": what this device already did.
        self.finished: dict[int, str] | None = None
        # Created on the first install: a check-in must not be built before and sent after an install's
        # final feedback, or the server would read the old version as an A/B fallback.
        self.lock: asyncio.Lock | None = None
        self.reenrolling = False


class FleetSimulator:
    """Simulated devices against fleetweb's device API; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        devices: int,
        enrollment_secret: str,
        profile: dict | None = None,
        interval_s: float | None = None,
        state_file: str | None = None,
        prefix: str = "sim",
        seed: int = 0,
        concurrency: int = 200,
        time_scale: float = 1.0,
        download: bool = False,
    ):
        if devices < 0 or concurrency < 1 or time_scale <= 0 or (interval_s is not None and interval_s <= 0):
            raise ValueError("devices >= 0, concurrency >= 1, time_scale > 0 and interval_s > 0 are required")
        self.base_url = base_url.rstrip("/")
        self.device_count = devices
        self.enrollment_secret = enrollment_secret
        self.profile = profile_check(profile_merge(DEFAULT_PROFILE, profile or {}))
        self.interval_s = interval_s
        self.state_file = Path(state_file) if state_file else None
        self.prefix = prefix
        self.seed = seed
        self.concurrency = concurrency
        self.time_scale = time_scale
        self.download = download
        self.stats = SimStats()
        self.health = HealthModel(self.profile)
        self.rng = random.Random(seed)
        self.devices: list[SimDevice] = []
        self._by_uid: dict[str, SimDevice] = {}
        self._foreign_state: dict[str, Any] = {}
        self._heap: list[tuple[float, int, int, int]] = []
        self._tiebreak = itertools.count()
        self._install_tasks: set[asyncio.Task] = set()
        self._waiters: list[tuple[Callable[[FleetSimulator], bool], asyncio.Future]] = []
        self._warned: dict[str, int] = {}
        self._dirty = False
        self._enrolled_since_save = 0
        self._origin = urlsplit(self.base_url)[:2]
        self._reboot = set(self.profile.get("reboot_components", []))
        self._tables: dict[str, Weighted] | None = None
        self._stopping = False
        # Built here, not in run(): a caller may look at (or wait on) the devices before run() starts.
        self._build_devices()

    # --- public ---------------------------------------------------------------------------

    async def run(self, *, duration_s: float | None = None, stop: asyncio.Event | None = None) -> SimStats:
        """Run until `duration_s` (real seconds) passes or `stop` is set; returns the stats."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[SimDevice] = asyncio.Queue(maxsize=self.concurrency * 2)
        self._heap = []
        now = loop.time()
        for device in self.devices:
            device.busy = False
            if device.disabled:
                continue
            if device.token is None:
                self._push(device, now)
            else:
                # Restored devices spread their first check-in over one interval, like a running fleet:
                # a restarted simulator must not hit the server with the whole fleet at once.
                self._push(device, now + self.rng.uniform(0, self._interval(device)) * self.time_scale)
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=30, connect=10)
        tasks: list[asyncio.Task] = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            self._stopping = False
            self._working: set[asyncio.Task] = set()
            workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
            try:
                tasks.append(asyncio.create_task(self._scheduler()))
                if self.state_file is not None:
                    tasks.append(asyncio.create_task(self._saver()))
                await self._until(duration_s, stop)
            finally:
                self._stopping = True
                # Check-ins already sent may finish (briefly), so our counts match what the server
                # recorded; idle workers, the scheduler and installs (mostly asleep) stop at once.
                for task in [*tasks, *self._install_tasks, *(w for w in workers if w not in self._working)]:
                    task.cancel()
                busy = [w for w in workers if w in self._working]
                if busy:
                    await asyncio.wait(busy, timeout=STOP_GRACE_S)
                for task in busy:
                    task.cancel()
                await asyncio.gather(*tasks, *workers, *self._install_tasks, return_exceptions=True)
                self._install_tasks.clear()
                for device in self.devices:
                    device.installs = None
                for _, future in self._waiters:
                    if not future.done():
                        future.set_exception(SimulatorStopped("the simulator stopped before the condition held"))
                self._waiters.clear()
        if self.state_file is not None:
            await asyncio.to_thread(self._write_state, self._state_snapshot(clean=True))
        return self.stats

    def run_sync(self, *, duration_s: float | None = None, stop: asyncio.Event | None = None) -> SimStats:
        return asyncio.run(self.run(duration_s=duration_s, stop=stop))

    async def wait_until(self, predicate: Callable[[FleetSimulator], bool], timeout: float | None = None) -> None:
        """Wait (while `run` runs) until `predicate(simulator)` holds; checked after every check-in and feedback."""
        if predicate(self):
            return
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def device(self, uid: str) -> SimDevice:
        return self._by_uid[uid]

    # --- devices and state ----------------------------------------------------------------

    def _build_devices(self) -> None:
        saved = self._read_state()
        # One generator walked in index order: device i comes out the same for any fleet size >= i + 1,
        # and seeding one generator per device would cost seconds for a big fleet.
        rng = random.Random(f"{self.seed}:{self.prefix}")
        for index in range(self.device_count):
            uid = f"{self.prefix}-{index:06d}"
            device = SimDevice(index, uid)
            self._invent(device, rng)
            entry = saved.pop(uid, None)
            if entry:
                device.token, device.seq, installed, device.server_interval = entry
                device.installed = dict(installed or device.installed)
                self.stats.reused += 1
            self.devices.append(device)
            self._by_uid[uid] = device
        # Devices of the file this run does not simulate (a larger earlier run) are kept as they were.
        self._foreign_state = saved

    def _invent(self, device: SimDevice, rng: random.Random) -> None:
        """A new device's hardware, attributes, tags and initial versions (a restored device keeps its own)."""
        profile = self.profile
        if self._tables is None:
            self._tables = {key: Weighted(profile[key]) for key in ("regions", "hardware", "customers")}
            self._tables.update({f"version:{c}": Weighted(w) for c, w in profile["versions"].items()})
        tables = self._tables
        region = tables["regions"].pick(rng)
        device.hw_model = tables["hardware"].pick(rng)
        device.attributes = {
            "region": region,
            "site": f"{region}-site-{1 + int(rng.random() * profile['sites_per_region'])}",
            "customer": tables["customers"].pick(rng),
        }
        device.tags = ["canary"] if rng.random() < profile["canary_share"] else []
        device.installed = {component: tables[f"version:{component}"].pick(rng) for component in profile["versions"]}

    def _read_state(self) -> dict[str, Any]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, expected {STATE_VERSION}")
            devices = data["devices"]
            clean = bool(data.get("clean"))
            for entry in devices.values():
                token, seq, installed, _interval = entry
                if not isinstance(token, str) or not isinstance(seq, int) or not isinstance(installed, dict):
                    raise TypeError(f"bad device entry {entry!r:.80}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Starting afresh would re-enroll devices the server already knows (409 for each): refuse.
            raise ValueError(
                f"state file {self.state_file} is unreadable ({exc}); move it away to start afresh"
            ) from exc
        if not clean:
            for entry in devices.values():
                entry[1] += SEQ_GAP_AFTER_CRASH
        return devices

    def _state_snapshot(self, *, clean: bool) -> dict[str, Any]:
        devices = dict(self._foreign_state)
        for device in self.devices:
            if device.token is None:
                continue
            # Attributes are not kept: a device sends them only when it enrolls, and the server keeps them.
            devices[device.uid] = [device.token, device.seq, device.installed, device.server_interval]
        self._dirty = False
        self._enrolled_since_save = 0
        return {"version": STATE_VERSION, "base_url": self.base_url, "clean": clean, "devices": devices}

    def _write_state(self, snapshot: dict[str, Any]) -> None:
        """Atomic: a reader (or a crash) sees the old file or the new one, never half of one."""
        path = self.state_file
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                # dumps, not dump: dump streams through the pure-Python encoder, many times slower for big fleets.
                handle.write(json.dumps(snapshot, separators=(",", ":")))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)  # it holds device tokens
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    async def _saver(self) -> None:
        pause = 2.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(pause)
            # New tokens are saved soon (a lost token means a device the server refuses to re-enroll);
            # sequence numbers only every half minute, the restart gap covers the rest.
            if self._enrolled_since_save or (self._dirty and time.monotonic() - last > 30):
                started = time.monotonic()
                await asyncio.to_thread(self._write_state, self._state_snapshot(clean=False))
                last = time.monotonic()
                # A big fleet's file takes a while to write: keep saving to a small share of the time.
                pause = max(2.0, (last - started) * 10)

    # --- scheduling -----------------------------------------------------------------------

    def _push(self, device: SimDevice, due: float) -> None:
        device.gen += 1
        entry = (due, next(self._tiebreak), device.index, device.gen)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()

    def _schedule(self, device: SimDevice, delay: float) -> None:
        """Next job of a device `delay` real seconds from now (or earlier if an install asked for it)."""
        now = asyncio.get_running_loop().time()
        due = now + delay
        if device.soon_at is not None:
            due = min(due, max(device.soon_at, now))
            device.soon_at = None
        self._push(device, due)

    def _wake_soon(self, device: SimDevice, delay: float) -> None:
        """Bring a device's next check-in forward (after an install, a device reports at once)."""
        due = asyncio.get_running_loop().time() + delay
        if device.busy:
            device.soon_at = due if device.soon_at is None else min(device.soon_at, due)
        else:
            self._push(device, due)

    async def _scheduler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._heap and self._heap[0][0] <= now:
                _, _, index, gen = heapq.heappop(self._heap)
                device = self.devices[index]
                if gen != device.gen or device.busy or device.disabled:
                    continue  # superseded by a later schedule of the same device
                device.busy = True
                # Blocks while the workers are saturated: the heap absorbs the backlog, not memory.
                await self._queue.put(device)
                now = loop.time()
            self._wake.clear()
            delay = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _worker(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            device = await self._queue.get()
            self._working.add(me)
            delay: float | None = None
            try:
                if device.token is None:
                    delay = await self._enroll(device)
                else:
                    delay = await self._checkin(device)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one device's surprise must not stop the fleet
                _bump(self.stats.checkin_errors, "internal")
                self._warn("internal", f"{device.uid}: {type(exc).__name__}: {exc}", exc_info=True)
                delay = self._backoff(device)
            finally:
                device.busy = False
                self._working.discard(me)
                self._queue.task_done()
            if delay is not None and not device.disabled:
                self._schedule(device, delay)
            self._notify()

    async def _until(self, duration_s: float | None, stop: asyncio.Event | None) -> None:
        waits = [asyncio.create_task(stop.wait())] if stop is not None else []
        try:
            if waits:
                await asyncio.wait(waits, timeout=duration_s)
            elif duration_s is not None:
                await asyncio.sleep(duration_s)
            else:
                await asyncio.Event().wait()
        finally:
            for task in waits:
                task.cancel()

    def _notify(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done():
                try:
                    if predicate(self):
                        future.set_result(None)
                except Exception as exc:  # noqa: BLE001 - a broken predicate fails its waiter, not the run
                    future.set_exception(exc)

    # --- timing ---------------------------------------------------------------------------

    def _interval(self, device: SimDevice) -> float:
        """The simulated check-in interval: the override, else what the server said."""
        return self.interval_s or device.server_interval or DEFAULT_INTERVAL_S

    def _next_checkin_delay(self, device: SimDevice) -> float:
        return self._interval(device) * self.rng.uniform(0.8, 1.2) * self.time_scale

    def _sim_range(self, bounds: list[float]) -> float:
        """A duration drawn from a profile's [low, high] simulated seconds, in real seconds."""
        return self.rng.uniform(bounds[0], bounds[1]) * self.time_scale

    def _backoff(self, device: SimDevice) -> float:
        device.failures += 1
        cap = min(MAX_BACKOFF_S, 2.0 ** min(device.failures, 6))
        return self.rng.uniform(cap / 2, cap)

    def _retry_after(self, headers: Any) -> float:
        value = headers.get("Retry-After", "") if headers is not None else ""
        seconds = 5.0
        if value.strip().isdigit():
            seconds = float(value.strip())
        elif value:
            with contextlib.suppress(TypeError, ValueError):
                seconds = max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        # Spread the herd: everyone told "5" must not come back in the same millisecond.
        return min(seconds, 3600.0) * self.rng.uniform(1.0, 1.5)

    def _warn(self, key: str, message: str, *, exc_info: bool = False) -> None:
        """Log the first few of a kind, then every 1000th: a fleet-wide problem must not flood the log."""
        count = self._warned[key] = self._warned.get(key, 0) + 1
        if count <= 5 or count % 1000 == 0:
            suffix = f" (×{count})" if count > 5 else ""
            log.warning("%s%s", message, suffix, exc_info=exc_info)

    # --- HTTP -----------------------------------------------------------------------------

    async def _post(self, url: str, body: dict, token: str | None = None) -> tuple[int, Any, Any]:
        """(status, parsed JSON or None, headers); status 0 is a transport error, "timeout" in the body."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.post(url, data=json.dumps(body, separators=(",", ":")), headers=headers) as resp:
                raw = await resp.read()
                data = None
                if raw and resp.content_type == "application/json":
                    with contextlib.suppress(ValueError):
                        data = json.loads(raw)
                return resp.status, data, resp.headers
        except TimeoutError:
            return 0, "timeout", None
        except aiohttp.ClientError as exc:
            return 0, f"connection: {exc}", None

    @staticmethod
    def _error_key(status: int, data: Any) -> str:
        if status == 0:
            return "timeout" if data == "timeout" else "connection"
        return str(status)

    # --- enrollment -----------------------------------------------------------------------

    async def _enroll(self, device: SimDevice) -> float | None:
        body = {
            "device_id": device.uid,
            "enrollment_secret": self.enrollment_secret,
            "hw_model": device.hw_model,
            "attributes": device.attributes,
            "tags": device.tags,
        }
        status, data, headers = await self._post(f"{self.base_url}/api/v1/enroll", body)
        if status == 201 and isinstance(data, dict) and data.get("token"):
            device.token = data["token"]
            device.server_interval = float(data.get("poll_interval_s") or DEFAULT_INTERVAL_S)
            device.failures = 0
            device.reenrolling = False
            self.stats.enrolled += 1
            self._enrolled_since_save += 1
            self._dirty = True
            # A freshly enrolled device checks in at once.
            return self.rng.uniform(0, 0.1) * self._interval(device) * self.time_scale
        key = self._error_key(status, data)
        _bump(self.stats.enroll_errors, key)
        if status == 409:
            self.stats.enroll_skipped += 1
            device.disabled = True
            why = "its token was refused" if device.reenrolling else "the state file has no token for it"
            self._warn(
                "enroll-409",
                f"{device.uid}: the server says it is already enrolled, but {why}; "
                "skipping this device (an admin can revoke its token to let it enroll again)",
            )
            return None
        if status in (400, 403):
            device.disabled = True
            detail = data.get("detail") if isinstance(data, dict) else data
            self._warn(f"enroll-{status}", f"{device.uid}: enrollment refused ({status}): {detail}; skipping it")
            return None
        if status in (429, 503):
            return self._retry_after(headers)
        return self._backoff(device)

    # --- check-in -------------------------------------------------------------------------

    async def _checkin(self, device: SimDevice) -> float | None:
        if device.lock is not None:
            async with device.lock:
                return await self._checkin_locked(device)
        return await self._checkin_locked(device)

    async def _checkin_locked(self, device: SimDevice) -> float | None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if device.last_ok is None:
            sim_elapsed = self._interval(device)
        else:
            sim_elapsed = (now - device.last_ok) / self.time_scale
        installed = dict(device.installed)
        counters = self.health.sample(installed, sim_elapsed, self.rng)
        health = {
            "interval_s": min(max(1, round(sim_elapsed)), 7 * 86400),
            "crashes": counters["crashes"],
            "failed_health_checks": counters["failed_health_checks"],
            "reboots": device.pending_reboots,
            # A crashed application is restarted by its supervisor.
            "app_restarts": counters["crashes"],
        }
        # Every attempt takes a new number: the server may have recorded an attempt whose answer got lost.
        device.seq += 1
        self._dirty = True
        body = {"seq": device.seq, "installed": installed, "health": health}
        url = f"{self.base_url}/api/v1/devices/{device.uid}/checkin"
        status, data, headers = await self._post(url, body, token=device.token)
        if status == 200 and isinstance(data, dict):
            device.failures = 0
            if data.get("duplicate"):
                # The server has seen higher numbers (a crash lost our count): jump ahead.
                device.seq += SEQ_GAP_AFTER_CRASH
                _bump(self.stats.checkin_errors, "duplicate")
                return self.rng.uniform(0, 1.0) * self.time_scale
            self.stats.checkins += 1
            self.stats.crashes_reported += health["crashes"]
            self.stats.reboots_reported += health["reboots"]
            device.pending_reboots -= health["reboots"]
            device.last_ok = now
            device.reported = installed
            next_s = data.get("next_checkin_s")
            if isinstance(next_s, int | float) and next_s > 0:
                device.server_interval = float(next_s)
            self._act_on(device, data.get("components") or {})
            return self._next_checkin_delay(device)
        key = self._error_key(status, data)
        _bump(self.stats.checkin_errors, key)
        if status == 401:
            # The token was revoked (or the server's database is new): try to enroll again.
            self._warn("checkin-401", f"{device.uid}: token refused; enrolling again")
            device.token = None
            device.reenrolling = True
            return self.rng.uniform(0.5, 1.5)
        if status in (429, 503):
            return self._retry_after(headers)
        if 400 <= status < 500:
            detail = data.get("detail") if isinstance(data, dict) else data
            self._warn(f"checkin-{status}", f"{device.uid}: check-in refused ({status}): {detail}")
            return self._next_checkin_delay(device)
        if status:
            self._warn("checkin-5xx", f"{device.uid}: check-in failed with {status}")
        else:
            self._warn(f"checkin-{key}", f"{device.uid}: check-in failed: {data}")
        return self._backoff(device)

    def _act_on(self, device: SimDevice, components: dict[str, Any]) -> None:
        """Start installs and cancels the check-in answer asks for."""
        deployments: dict[int, dict[str, Any]] = {}
        for name, entry in components.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("deployment_id"), int):
                continue
            plan = deployments.setdefault(
                entry["deployment_id"],
                {
                    "action": entry.get("action", "install"),
                    "state": entry.get("deployment_state"),
                    "targets": {},
                    "artifacts": [],
                },
            )
            plan["targets"][name] = entry.get("target")
            plan["artifacts"].extend(entry.get("artifacts") or [])
        for deployment_id, plan in deployments.items():
            active = device.installs or {}
            done = (device.finished or {}).get(deployment_id)
            if plan["action"] == "cancel":
                # Too late once installed: the deployment settles or fails on its own.
                if done not in ("canceling", "canceled", "installed", "gone"):
                    self._finish(device, deployment_id, "canceling")
                    self._spawn(device, deployment_id, self._cancel(device, deployment_id))
                continue
            if plan["action"] != "install" or deployment_id in active:
                continue
            # A deployment this device finished (failed, or fell back after installing) comes back as
            # "pending" only when the server retries it: a device's check-ins are sequential, so no
            # answer older than the install can arrive after it.
            if done is not None and not (done in ("failed", "installed") and plan["state"] == "pending"):
                continue
            targets = {name: version for name, version in plan["targets"].items() if isinstance(version, str)}
            if any(device.installed.get(name) != version for name, version in targets.items()):
                self._spawn(device, deployment_id, self._install(device, deployment_id, targets, plan["artifacts"]))

    def _spawn(self, device: SimDevice, deployment_id: int, coro) -> None:
        if self._stopping:
            coro.close()  # a check-in answered during shutdown must not start work that outlives run()
            return
        task = asyncio.create_task(coro)
        if device.installs is None:
            device.installs = {}
        # The cancel task must not replace (and so hide) the install task it is about to cancel.
        if deployment_id not in device.installs:
            device.installs[deployment_id] = task
        self._install_tasks.add(task)
        task.add_done_callback(self._install_tasks.discard)

    def _finish(self, device: SimDevice, deployment_id: int, outcome: str) -> None:
        if device.finished is None:
            device.finished = {}
        device.finished[deployment_id] = outcome

    # --- installs -------------------------------------------------------------------------

    def _release_settings(self, targets: dict[str, str]) -> dict[str, Any]:
        """Install behaviour of a set of target releases (a bundle fails if any part fails)."""
        base = self.profile.get("install", {})
        ok, keep, fallback_ok = 1.0, [], 1.0
        install_s = list(base.get("install_s", [5, 30]))
        download_s = list(base.get("download_s", [2, 10]))
        for name, version in targets.items():
            settings = {**base, **self.profile.get("releases", {}).get(f"{name}={version}", {})}
            fail = float(settings.get("install_fail", 0.0))
            ok *= 1.0 - fail
            keep.append((fail, float(settings.get("retryable_fail_share", 0.5))))
            fallback_ok *= 1.0 - float(settings.get("fallback", 0.0))
            install_s = [max(install_s[0], settings["install_s"][0]), max(install_s[1], settings["install_s"][1])]
            download_s = [max(download_s[0], settings["download_s"][0]), max(download_s[1], settings["download_s"][1])]
        fail_total = sum(f for f, _ in keep)
        retryable = sum(f * share for f, share in keep) / fail_total if fail_total else 0.5
        return {
            "install_fail": 1.0 - ok,
            "retryable_fail_share": retryable,
            "fallback": 1.0 - fallback_ok,
            "install_s": install_s,
            "download_s": download_s,
            "reboot_s": base.get("reboot_s", [10, 30]),
        }

    async def _install(
        self, device: SimDevice, deployment_id: int, targets: dict[str, str], artifacts: list[dict]
    ) -> None:
        if device.lock is None:
            device.lock = asyncio.Lock()
        settings = self._release_settings(targets)
        try:
            if not await self._feedback(device, deployment_id, {"state": "downloading", "progress": 0}):
                return
            if self.download and artifacts:
                problem = await self._download(device, artifacts)
                if problem is not None:
                    await self._fail(device, deployment_id, problem[0], problem[1])
                    return
            else:
                await asyncio.sleep(self._sim_range(settings["download_s"]))
            if not await self._feedback(device, deployment_id, {"state": "downloading", "progress": 100}):
                return
            if not await self._feedback(device, deployment_id, {"state": "installing", "progress": 0}):
                return
            await asyncio.sleep(self._sim_range(settings["install_s"]))
            if self.rng.random() < settings["install_fail"]:
                codes = self.profile["error_codes"]
                retryable = self.rng.random() < settings["retryable_fail_share"]
                code = self.rng.choice(codes["retryable" if retryable else "permanent"])
                await self._fail(device, deployment_id, code, f"simulated install failure of {_spec(targets)}")
                return
            fallback = self.rng.random() < settings["fallback"]
            reboots = any(name in self._reboot for name in targets)
            assert device.lock is not None
            async with device.lock:
                if not await self._feedback(device, deployment_id, {"state": "installed", "progress": 100}):
                    return
                self._finish(device, deployment_id, "installed")
                if fallback:
                    # The device booted the new slot, failed its boot check and returned to the old one.
                    self.stats.fallbacks += 1
                else:
                    device.installed = {**device.installed, **targets}
                    self.stats.installs_ok += 1
                if reboots:
                    device.pending_reboots += 1
                self._dirty = True
            # After a reboot the device is back (and checks in) once it has booted; an app reports at once.
            delay = self._sim_range(settings["reboot_s"]) if reboots else self.rng.uniform(0.1, 1.0) * self.time_scale
            self._wake_soon(device, delay)
        finally:
            if device.installs is not None and device.installs.get(deployment_id) is asyncio.current_task():
                del device.installs[deployment_id]
            self._notify()

    async def _fail(self, device: SimDevice, deployment_id: int, code: str, detail: str) -> None:
        if await self._feedback(device, deployment_id, {"state": "failed", "error_code": code, "detail": detail}):
            self._finish(device, deployment_id, "failed")
            self.stats.installs_failed += 1

    async def _cancel(self, device: SimDevice, deployment_id: int) -> None:
        running = (device.installs or {}).get(deployment_id)
        if running is not None and running is not asyncio.current_task():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        try:
            if await self._feedback(device, deployment_id, {"state": "canceled"}):
                self.stats.installs_canceled += 1
                self._finish(device, deployment_id, "canceled")
        finally:
            if device.installs is not None and device.installs.get(deployment_id) is asyncio.current_task():
                del device.installs[deployment_id]

    async def _feedback(self, device: SimDevice, deployment_id: int, body: dict[str, Any]) -> bool:
        """POST one feedback; retries transient errors; False when the server does not want it (any more)."""
        url = f"{self.base_url}/api/v1/devices/{device.uid}/deployments/{deployment_id}/feedback"
        for attempt in range(FEEDBACK_ATTEMPTS):
            status, data, headers = await self._post(url, body, token=device.token)
            if 200 <= status < 300:
                self.stats.feedbacks += 1
                return True
            _bump(self.stats.feedback_errors, self._error_key(status, data))
            if status in (429, 503):
                await asyncio.sleep(self._retry_after(headers))
            elif status == 0 or status >= 500:
                await asyncio.sleep(min(MAX_BACKOFF_S, 2.0**attempt) * self.rng.uniform(0.5, 1.0))
            else:
                # 404/409/410: the deployment is gone, finished or canceled on the server: stop working on it.
                detail = data.get("detail") if isinstance(data, dict) else data
                self._warn(
                    f"feedback-{status}",
                    f"{device.uid}: feedback {body['state']} on #{deployment_id}: {status} {detail}",
                )
                self._finish(device, deployment_id, "gone")
                return False
        self._finish(device, deployment_id, "gone")
        return False

    async def _download(self, device: SimDevice, artifacts: list[dict]) -> tuple[str, str] | None:
        """Fetch the artifacts served by this fleetweb and check their SHA-256; (error_code, detail) on failure."""
        for artifact in artifacts:
            url = str(artifact.get("url") or "")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                continue  # an image reference, pulled by a container runtime, not by the update agent
            # The device token goes to our own server only.
            headers = {"Authorization": f"Bearer {device.token}"} if parts[:2] == self._origin else {}
            digest = hashlib.sha256()
            try:
                async with self._session.get(url, headers=headers) as resp:
                    if resp.status != 200:
                        return "download_failed", f"{url}: HTTP {resp.status}"
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        digest.update(chunk)
                        self.stats.downloaded_bytes += len(chunk)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return "download_interrupted", f"{url}: {exc}"
            expected = artifact.get("sha256")
            if expected and digest.hexdigest() != expected:
                return "checksum_mismatch", f"{artifact.get('filename')}: sha256 {digest.hexdigest()} != {expected}"
        return None


def _spec(targets: dict[str, str]) -> str:
    return ", ".join(f"{name}={version}" for name, version in sorted(targets.items()))
