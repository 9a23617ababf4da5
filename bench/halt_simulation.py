"""Measure the spike gate by simulation: false halts on healthy releases, exposure before halting bad ones.

    .venv/bin/python bench/halt_simulation.py --healthy 500 --bad 500 --fleet 100000 --seed 1 --jobs 2

Prints a table to stderr and ONE JSON line to stdout (docs/halting.md records the measured line).
No Django settings or database needed: the simulation core is apps/rollouts/halt_sim.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run from anywhere without installing the project: the repository root holds the `apps` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.rollouts import halt_sim, stats


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = halt_sim.SimParams()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=500, help="healthy rollouts (same rates as the baseline)")
    parser.add_argument("--bad", type=int, default=500, help="bad rollouts, spread over --severities")
    parser.add_argument("--fleet", type=int, default=defaults.fleet)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--severities",
        type=_floats,
        default=halt_sim.DEFAULT_SEVERITIES,
        help="crash-rate multipliers of bad releases, comma-separated",
    )
    parser.add_argument("--waves", type=_floats, default=defaults.waves, help="cumulative fleet fractions")
    parser.add_argument(
        "--base-rates",
        type=_floats,
        default=defaults.base_rates_h,
        help="fleet mean per device-hour of each tested metric (the first is crashes)",
    )
    parser.add_argument("--shape", type=float, default=defaults.shape, help="gamma shape of per-device rates")
    parser.add_argument("--drift-sigma", type=float, default=defaults.drift_sigma)
    parser.add_argument("--diurnal", type=float, default=defaults.diurnal)
    parser.add_argument("--tick-s", type=int, default=defaults.tick_s)
    parser.add_argument("--checkin-s", type=int, default=defaults.checkin_s)
    parser.add_argument("--ramp-s", type=int, default=defaults.ramp_s)
    parser.add_argument("--soak-s", type=int, default=defaults.soak_s)
    parser.add_argument(
        "--window-s",
        type=int,
        default=defaults.window_s,
        help="0: reports since the first install (the engine's window); else a sliding window",
    )
    # The gate's parameters: the defaults are poisson_spike_test's own; override only to explore.
    parser.add_argument("--alpha", type=float, default=stats.DEFAULT_ALPHA)
    parser.add_argument("--min-devices", type=int, default=stats.DEFAULT_MIN_DEVICES)
    parser.add_argument("--min-exposure-h", type=float, default=stats.DEFAULT_MIN_EXPOSURE_H)
    parser.add_argument("--min-ratio", type=float, default=stats.DEFAULT_MIN_RATIO)
    parser.add_argument("--min-events", type=int, default=stats.DEFAULT_MIN_EVENTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = halt_sim.SimParams(
        fleet=args.fleet,
        waves=args.waves,
        tick_s=args.tick_s,
        checkin_s=args.checkin_s,
        ramp_s=args.ramp_s,
        soak_s=args.soak_s,
        window_s=args.window_s,
        base_rates_h=args.base_rates,
        shape=args.shape,
        drift_sigma=args.drift_sigma,
        diurnal=args.diurnal,
        alpha=args.alpha,
        min_devices=args.min_devices,
        min_exposure_h=args.min_exposure_h,
        min_ratio=args.min_ratio,
        min_events=args.min_events,
    )
    result = halt_sim.run_and_summarize(
        params, healthy=args.healthy, bad=args.bad, severities=args.severities, seed=args.seed, jobs=args.jobs
    )
    print_table(result)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def print_table(result: dict) -> None:
    err = sys.stderr
    print(
        f"healthy rollouts: {result['healthy_runs']}, false halts: {result['false_halts']}"
        f" ({result['false_halt_rate']}; 95% upper bound {result['false_halt_rate_upper95']})",
        file=err,
    )
    print(
        f"{'severity':>8} {'runs':>5} {'halted':>6} {'<2% fleet':>9} {'median exposed':>14}"
        f" {'p90 exposed':>11} {'median s':>8} {'p90 s':>6}",
        file=err,
    )
    for severity, row in result["by_severity"].items():
        print(
            f"{severity + '×':>8} {row['runs']:>5} {row['halted']:>6} {row['halted_before_2pct_of_fleet']:>9}"
            f" {row['median_devices_exposed']!s:>14} {row['p90_devices_exposed']!s:>11}"
            f" {row['median_seconds_to_halt']!s:>8} {row['p90_seconds_to_halt']!s:>6}",
            file=err,
        )
    print(f"elapsed: {result['elapsed_s']} s", file=err)


if __name__ == "__main__":
    sys.exit(main())
