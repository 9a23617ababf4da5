"""Seeded simulated rollouts that measure the spike gate: false halts on healthy releases, delay on bad ones.

No HTTP, no database, no Django: a rollout over a fleet of F devices is simulated with counts
aggregated per check-in phase, so one 100,000-device rollout costs a few hundred ticks of O(1)
work, not a loop over devices. Every tick the gate is evaluated exactly as the engine does it
(apps/rollouts/gates.py): `poisson_spike_test` per metric, updated devices' reports since their
install vs the baseline devices' reports, both cumulative since the rollout's first install.

The model (docs/halting.md explains the choices):
- Each device has its own rate per metric, Gamma(shape, mean/shape): real fleets are
  over-dispersed (a few devices crash a lot), which is what fools a plain Poisson test.
- The fleet-level rate differs between runs (log-normal drift) and follows a daily cycle within
  a run; both hit updated and baseline devices alike, as they do in a real fleet.
- Devices check in every `checkin_s` at a fixed phase; a released device installs at its next
  check-in and reports on the new release from the following one (full intervals).
- Waves take cumulative fractions of the fleet; a wave's devices are released evenly over
  `ramp_s` (pacing); the next wave starts `soak_s` after the wave's last install.
- A bad release multiplies every device's rate of the first metric (crashes) by `severity`.

Exactness of the aggregation: a sum of independent Gamma(k, θ) rates is Gamma(Σk, θ), and the
share of a group's rate sum carried by m of its n devices is Beta(m·k, (n-m)·k) whatever the sum,
so moving devices between groups keeps each device's rate without tracking devices one by one.
Poisson counts of a group in one check-in are Poisson(Σ rates × interval), also exact. The one
approximation: when devices leave the baseline, their past baseline events leave in proportion
to their rate share (the engine drops a device's old reports from the baseline once it updates).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from . import stats

DEFAULT_SEVERITIES = (1.5, 2.0, 3.0, 5.0, 10.0)
METRIC_NAMES = ("crashes", "failed_health_checks", "reboots", "app_restarts")


@dataclass(frozen=True)
class SimParams:
    """One simulated fleet and rollout plan, plus the gate's parameters (the stats defaults)."""

    fleet: int = 100_000
    waves: tuple[float, ...] = (0.01, 0.05, 0.25, 1.0)  # cumulative fractions of the fleet
    tick_s: int = 60  # the gate is evaluated once per tick
    checkin_s: int = 900
    ramp_s: int = 1800  # pacing: a wave's devices are released evenly over this time
    soak_s: int = 3600  # after a wave's last install, before the next wave starts
    # 0: reports since the rollout's first install, as apps/rollouts/gates.py reads them; else a
    # sliding window of this length (a multiple of checkin_s) for both groups.
    window_s: int = 0
    # Fleet mean per device-hour of each metric; the engine tests crashes and failed health checks
    # by default, and every extra metric is one more chance of a false halt per look.
    base_rates_h: tuple[float, ...] = (0.2, 0.3)
    shape: float = 0.5  # per-device rate heterogeneity: coefficient of variation 1/sqrt(shape)
    drift_sigma: float = 0.5  # log-sd of the fleet-level rate between runs
    diurnal: float = 0.3  # amplitude of the daily cycle
    alpha: float = stats.DEFAULT_ALPHA
    min_devices: int = stats.DEFAULT_MIN_DEVICES
    min_exposure_h: float = stats.DEFAULT_MIN_EXPOSURE_H
    min_ratio: float = stats.DEFAULT_MIN_RATIO
    min_events: int = stats.DEFAULT_MIN_EVENTS

    def gate_options(self) -> dict[str, float | int]:
        return {
            "alpha": self.alpha,
            "min_devices": self.min_devices,
            "min_exposure_h": self.min_exposure_h,
            "min_ratio": self.min_ratio,
            "min_events": self.min_events,
        }


@dataclass(frozen=True)
class RunResult:
    """What one simulated rollout ended with."""

    severity: float  # 1.0: a healthy release
    halted: bool
    seconds: int  # to the halt, or to the end of the rollout
    wave: int  # index of the wave running at the halt (or the last wave)
    devices_exposed: int  # devices that had installed the release when it halted (or in all)
    devices_released: int  # ... plus those released to but not yet installed
    metric: str = ""
    p_value: float = 1.0
    ratio: float = 0.0
    summary: str = ""


def poisson(rng: random.Random, mu: float) -> int:
    """An exact Poisson sample: inversion for small means, PTRS (Hörmann 1993) for large ones."""
    if mu <= 0.0:
        return 0
    if mu < 10.0:
        limit, count, product = math.exp(-mu), 0, rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
        return count
    slam, loglam = math.sqrt(mu), math.log(mu)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + mu + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b) <= -mu + k * loglam - math.lgamma(k + 1):
            return k


def simulate_rollout(params: SimParams, severity: float, seed: int | str) -> RunResult:
    """One rollout of a release that multiplies the crash rate by `severity` (1.0: healthy)."""
    rng = random.Random(seed)
    phases = max(1, params.checkin_s // params.tick_s)
    hours = params.checkin_s / 3600.0
    metrics = range(len(params.base_rates_h))
    names = [METRIC_NAMES[m] if m < len(METRIC_NAMES) else f"metric_{m}" for m in metrics]
    factors = [severity if m == 0 else 1.0 for m in metrics]
    options = params.gate_options()
    # Reports per phase inside the window; 0: one record accumulating since the first install.
    keep = params.window_s // params.checkin_s if params.window_s else 0

    # The fleet-level rate of this run, and the phase of its daily cycle.
    drift = [math.exp(rng.gauss(0.0, params.drift_sigma) - params.drift_sigma**2 / 2) for _ in metrics]
    day_phase = rng.uniform(0.0, 2.0 * math.pi)

    base_n = [params.fleet // phases + (1 if p < params.fleet % phases else 0) for p in range(phases)]
    base_lam = [
        [_gamma_sum(rng, params.shape * n, rate / params.shape) for n in base_n] for rate in params.base_rates_h
    ]
    upd_n = [0] * phases
    upd_lam = [[0.0] * phases for _ in metrics]
    # Per phase, the reports in the window: baseline [exposure, events...], updated [devices, exposure, events...].
    base_rec: list[list[list[float]]] = [[] for _ in range(phases)]
    upd_rec: list[list[list[float]]] = [[] for _ in range(phases)]
    pending = [0] * phases  # released, installing at the phase's next check-in

    targets = [min(params.fleet, max(1, round(f * params.fleet))) for f in params.waves]
    ramp_ticks = max(1, params.ramp_s // params.tick_s)
    soak_ticks = max(0, params.soak_s // params.tick_s)
    wave, wave_start, wave_done = 0, 0, None
    released = installed = previous_target = 0
    tick = 0
    while True:
        p = tick % phases
        level = 1.0 + params.diurnal * math.sin(2.0 * math.pi * tick * params.tick_s / 86400.0 + day_phase)
        # 1. The phase's devices report the interval that just ended. The engine's cumulative
        # window starts at the first install; a sliding window has history from before it.
        if installed or keep:
            scale = [drift[m] * level * hours for m in metrics]
            record = [base_n[p] * hours] + [poisson(rng, base_lam[m][p] * scale[m]) for m in metrics]
            _add_record(base_rec[p], record, keep)
            if upd_n[p]:
                events = [poisson(rng, upd_lam[m][p] * factors[m] * scale[m]) for m in metrics]
                _add_record(upd_rec[p], [upd_n[p], upd_n[p] * hours, *events], keep, latest_first=1)
        # 2. Released devices of this phase install now, taking their own rates along.
        if pending[p]:
            k = min(pending[p], base_n[p])
            for m in metrics:
                share = 1.0 if k >= base_n[p] else rng.betavariate(k * params.shape, (base_n[p] - k) * params.shape)
                moved = base_lam[m][p] * share
                base_lam[m][p] -= moved
                upd_lam[m][p] += moved
                # Their old reports leave the baseline (the engine's baseline is "devices not updated"):
                # the expected share of events by rate, of exposure by count (see the module doc).
                for rec in base_rec[p]:
                    rec[1 + m] *= 1.0 - share
            for rec in base_rec[p]:
                rec[0] *= 1.0 - k / base_n[p]
            base_n[p] -= k
            upd_n[p] += k
            installed += k
            pending[p] = 0
        # 3. Pacing: release the wave's devices evenly over the ramp.
        elapsed = tick - wave_start + 1
        want = previous_target + math.ceil((targets[wave] - previous_target) * min(1.0, elapsed / ramp_ticks))
        if want > released:
            _release(rng, base_n, pending, want - released)
            released = want
        # 4. The gate, once per tick, as the engine evaluates it.
        if installed:
            upd_devices = sum(int(recs[-1][0]) for recs in upd_rec if recs)
            upd_exposure = sum(rec[1] for recs in upd_rec for rec in recs)
            base_devices = sum(n for n, recs in zip(base_n, base_rec, strict=True) if recs)
            base_exposure = sum(rec[0] for recs in base_rec for rec in recs)
            for m in metrics:
                decision = stats.poisson_spike_test(
                    stats.RateSample(
                        round(sum(rec[2 + m] for recs in upd_rec for rec in recs)), upd_exposure, upd_devices
                    ),
                    stats.RateSample(
                        round(sum(rec[1 + m] for recs in base_rec for rec in recs)), base_exposure, base_devices
                    ),
                    metric=names[m],
                    **options,
                )
                if decision.halt:
                    return RunResult(
                        severity=severity,
                        halted=True,
                        seconds=(tick + 1) * params.tick_s,
                        wave=wave,
                        devices_exposed=installed,
                        devices_released=released,
                        metric=names[m],
                        p_value=decision.p_value,
                        ratio=decision.ratio,
                        summary=decision.summary,
                    )
        # 5. Waves: soak after the last install, then the next wave (or the end).
        if wave_done is None and installed >= targets[wave]:
            wave_done = tick
        if wave_done is not None and tick - wave_done >= soak_ticks:
            if wave + 1 == len(targets):
                return RunResult(severity, False, (tick + 1) * params.tick_s, wave, installed, released)
            previous_target = targets[wave]
            wave, wave_start, wave_done = wave + 1, tick + 1, None
        tick += 1


def _add_record(records: list[list[float]], record: list[float], keep: int, latest_first: int = 0) -> None:
    """Append one report record; with no window (keep=0) fold it into a single running record.

    The first `latest_first` fields are levels (devices), not sums: the running record takes the latest.
    """
    if keep == 0 and records:
        running = records[0]
        for i, value in enumerate(record):
            running[i] = value if i < latest_first else running[i] + value
        return
    records.append(record)
    if keep and len(records) > keep:
        del records[0]


def _gamma_sum(rng: random.Random, shape: float, scale: float) -> float:
    return rng.gammavariate(shape, scale) if shape > 0 and scale > 0 else 0.0


def _release(rng: random.Random, base_n: list[int], pending: list[int], count: int) -> None:
    """Release `count` devices not released yet: each phase in proportion to what is left there."""
    available = [n - q for n, q in zip(base_n, pending, strict=True)]
    total = sum(available)
    count = min(count, total)
    if count <= 0:
        return
    if count > 20 * len(available):
        # Thousands per tick in the last wave: a per-device draw would dominate the run, and the
        # split over check-in phases only needs to be proportional, so round and draw the remainder.
        shares = [count * a / total for a in available]
        takes = [int(x) for x in shares]
        rest = count - sum(takes)
        weights = [x - t for x, t in zip(shares, takes, strict=True)]
        for p in rng.choices(range(len(available)), weights=weights, k=rest) if rest else ():
            takes[p] += 1
    else:
        takes = [0] * len(available)
        for p in rng.choices(range(len(available)), weights=available, k=count):
            takes[p] += 1
    # Drawing with replacement can overshoot a nearly empty phase; put the excess where room is left.
    overflow = 0
    for p, take in enumerate(takes):
        excess = max(0, take - available[p])
        takes[p] -= excess
        overflow += excess
    for p, take in enumerate(takes):
        extra = min(overflow, available[p] - take)
        takes[p] += extra
        overflow -= extra
        pending[p] += takes[p]


# ---------------------------------------------------------------- many runs


def _run_task(task: tuple[SimParams, float, str]) -> RunResult:
    params, severity, seed = task
    return simulate_rollout(params, severity, seed)


def run_tasks(
    params: SimParams, healthy: int, bad: int, severities: Sequence[float], seed: int
) -> list[tuple[SimParams, float, str]]:
    """Healthy runs then bad runs (severities round-robin), each with its own deterministic seed."""
    tasks = [(params, 1.0, f"{seed}:healthy:{i}") for i in range(healthy)]
    tasks += [(params, float(severities[i % len(severities)]), f"{seed}:bad:{i}") for i in range(bad)]
    return tasks


def run_many(
    params: SimParams,
    *,
    healthy: int,
    bad: int,
    severities: Sequence[float] = DEFAULT_SEVERITIES,
    seed: int = 1,
    jobs: int = 1,
) -> list[RunResult]:
    """Run the rollouts, in `jobs` processes; the results do not depend on `jobs`."""
    tasks = run_tasks(params, healthy, bad, severities, seed)
    if jobs <= 1 or len(tasks) < 2:
        return [_run_task(task) for task in tasks]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(_run_task, tasks, chunksize=max(1, len(tasks) // (jobs * 8)))


def summarize(results: Iterable[RunResult], params: SimParams, *, seed: int, jobs: int, elapsed_s: float) -> dict:
    """The figures the targets are judged on, per severity too, with the parameters and seed."""
    results = list(results)
    healthy = [r for r in results if r.severity == 1.0]
    bad = [r for r in results if r.severity != 1.0]
    false_halts = [r for r in healthy if r.halted]
    missed = [r for r in bad if not r.halted]
    two_percent = 0.02 * params.fleet
    by_severity = {}
    for severity in sorted({r.severity for r in bad}):
        runs = [r for r in bad if r.severity == severity]
        halted = [r for r in runs if r.halted]
        by_severity[f"{severity:g}"] = {
            "runs": len(runs),
            "halted": len(halted),
            "missed": len(runs) - len(halted),
            "detection_rate": _ratio(len(halted), len(runs)),
            "halted_before_2pct_of_fleet": sum(1 for r in halted if r.devices_exposed < two_percent),
            "share_halted_before_2pct_of_fleet": _ratio(
                sum(1 for r in halted if r.devices_exposed < two_percent), len(runs)
            ),
            "median_devices_exposed": _quantile([r.devices_exposed for r in runs], 0.5),
            "p90_devices_exposed": _quantile([r.devices_exposed for r in runs], 0.9),
            "max_devices_exposed": max((r.devices_exposed for r in runs), default=None),
            "median_seconds_to_halt": _quantile([r.seconds for r in halted], 0.5),
            "p90_seconds_to_halt": _quantile([r.seconds for r in halted], 0.9),
            "halts_by_metric": _histogram(r.metric for r in halted),
        }
    halted_bad = [r for r in bad if r.halted]
    return {
        "healthy_runs": len(healthy),
        "false_halts": len(false_halts),
        "false_halt_rate": _ratio(len(false_halts), len(healthy)),
        # Zero false halts in 500 runs still allows a true rate up to 0.6%: say so.
        "false_halt_rate_upper95": round(clopper_pearson_upper(len(false_halts), len(healthy)), 5),
        "false_halts_by_wave": _histogram(str(r.wave + 1) for r in false_halts),
        "false_halts_by_metric": _histogram(r.metric for r in false_halts),
        "bad_runs": len(bad),
        "missed_bad": len(missed),
        # Over every bad run: a missed one exposed the whole fleet, which the median should feel.
        "median_devices_exposed": _quantile([r.devices_exposed for r in bad], 0.5),
        "median_seconds_to_halt": _quantile([r.seconds for r in halted_bad], 0.5),
        "median_healthy_rollout_seconds": _quantile([r.seconds for r in healthy if not r.halted], 0.5),
        "by_severity": by_severity,
        "params": {**asdict(params), "waves": list(params.waves), "base_rates_h": list(params.base_rates_h)},
        "seed": seed,
        "jobs": jobs,
        "elapsed_s": round(elapsed_s, 1),
    }


def run_and_summarize(
    params: SimParams,
    *,
    healthy: int,
    bad: int,
    severities: Sequence[float] = DEFAULT_SEVERITIES,
    seed: int = 1,
    jobs: int = 1,
) -> dict:
    started = time.monotonic()
    results = run_many(params, healthy=healthy, bad=bad, severities=severities, seed=seed, jobs=jobs)
    return summarize(results, params, seed=seed, jobs=jobs, elapsed_s=time.monotonic() - started)


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """Upper end of the two-sided exact binomial interval for k successes in n (bisection on binom_sf)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    tail = (1.0 - confidence) / 2.0
    low, high = k / n, 1.0
    # P[X <= k | p] falls with p; find p where it equals the tail.
    for _ in range(100):
        mid = (low + high) / 2.0
        if 1.0 - stats.binom_sf(k + 1, n, mid) > tail:
            low = mid
        else:
            high = mid
    return high


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 5) if b else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    values = sorted(values)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if q == 0.5:
        return statistics.median(values)
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def _histogram(keys: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
