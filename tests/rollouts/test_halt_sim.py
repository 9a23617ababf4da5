"""The halt simulation: deterministic per seed, detects a bad release, leaves a healthy one alone. No database."""

import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from apps.rollouts import halt_sim, stats

# A small fleet keeps each rollout cheap; the shape of the rollout (waves, pacing, soak) is the default one.
SMALL = halt_sim.SimParams(fleet=5_000, waves=(0.02, 0.2, 1.0), ramp_s=900, soak_s=1800)
REPO = Path(__file__).resolve().parents[2]


def test_it_is_deterministic_for_a_seed():
    first = halt_sim.simulate_rollout(SMALL, 3.0, "fixed:1")
    again = halt_sim.simulate_rollout(SMALL, 3.0, "fixed:1")
    other = halt_sim.simulate_rollout(SMALL, 3.0, "fixed:2")
    assert first == again
    assert first.summary == again.summary
    assert (first.seconds, first.devices_exposed) != (other.seconds, other.devices_exposed)


def test_it_halts_a_tenfold_crash_release_in_the_first_wave():
    for i in range(4):
        result = halt_sim.simulate_rollout(SMALL, 10.0, f"bad:{i}")
        assert result.halted, i
        assert result.metric == "crashes"
        assert result.wave == 0
        assert result.devices_exposed <= 100  # the first wave: 2% of 5,000
        assert "crash rate" in result.summary
        assert result.ratio >= stats.DEFAULT_MIN_RATIO
        assert result.p_value < stats.DEFAULT_ALPHA


def test_it_lets_a_healthy_release_reach_the_whole_fleet():
    for i in range(4):
        result = halt_sim.simulate_rollout(SMALL, 1.0, f"healthy:{i}")
        assert not result.halted, result.summary
        assert result.devices_exposed == SMALL.fleet
        assert result.wave == len(SMALL.waves) - 1
        # Three waves of ramp + a check-in + soak each.
        assert result.seconds >= 3 * (SMALL.ramp_s + SMALL.soak_s)


def test_it_gives_the_same_results_in_parallel():
    serial = halt_sim.run_many(SMALL, healthy=2, bad=2, severities=(10.0,), seed=5, jobs=1)
    parallel = halt_sim.run_many(SMALL, healthy=2, bad=2, severities=(10.0,), seed=5, jobs=2)
    assert serial == parallel
    assert [r.severity for r in serial] == [1.0, 1.0, 10.0, 10.0]


def test_it_summarizes_false_halts_and_detection_per_severity():
    results = [
        halt_sim.RunResult(1.0, False, 9000, 2, 5000, 5000),
        halt_sim.RunResult(1.0, True, 600, 0, 40, 60, "crashes", 1e-5, 2.0, "…"),
        halt_sim.RunResult(3.0, True, 1200, 0, 70, 90, "crashes", 1e-9, 3.1, "…"),
        halt_sim.RunResult(3.0, False, 9000, 2, 5000, 5000),
        halt_sim.RunResult(10.0, True, 900, 0, 50, 80, "crashes", 1e-12, 9.0, "…"),
    ]
    summary = halt_sim.summarize(results, SMALL, seed=1, jobs=1, elapsed_s=0.5)
    assert (summary["healthy_runs"], summary["false_halts"], summary["false_halt_rate"]) == (2, 1, 0.5)
    assert (summary["bad_runs"], summary["missed_bad"]) == (3, 1)
    assert summary["median_devices_exposed"] == 70  # the missed run counts with the whole fleet
    assert summary["median_seconds_to_halt"] == 1050
    three = summary["by_severity"]["3"]
    assert (three["runs"], three["halted"], three["missed"], three["detection_rate"]) == (2, 1, 1, 0.5)
    assert three["halted_before_2pct_of_fleet"] == 1  # 70 < 2% of 5,000
    assert summary["params"]["fleet"] == 5_000
    json.dumps(summary, allow_nan=False)


def test_it_bounds_a_zero_false_halt_count_honestly():
    # Clopper-Pearson: 0 of 500 allows up to 1 - 0.025^(1/500).
    assert halt_sim.clopper_pearson_upper(0, 500) == pytest.approx(1 - 0.025 ** (1 / 500), rel=1e-6)
    assert halt_sim.clopper_pearson_upper(5, 5) == 1.0


@pytest.mark.parametrize("mu", [0.7, 6.0, 40.0, 900.0])
def test_it_samples_poisson_counts_with_the_right_mean_and_variance(mu):
    rng = random.Random(42)
    draws = [halt_sim.poisson(rng, mu) for _ in range(20_000)]
    # Standard errors: mean sqrt(mu/n), variance ~ mu*sqrt(2/n); 5 of them is a loose but real bound.
    assert statistics.fmean(draws) == pytest.approx(mu, abs=5 * (mu / 20_000) ** 0.5)
    assert statistics.variance(draws) == pytest.approx(mu, rel=5 * (2 / 20_000) ** 0.5 + 0.01)
    assert min(draws) >= 0


def test_it_runs_the_bench_command_without_django():
    env = {"PATH": "/usr/bin:/bin"}  # no DJANGO_SETTINGS_MODULE, no PYTHONPATH
    completed = subprocess.run(
        [
            sys.executable,
            "bench/halt_simulation.py",
            "--healthy",
            "2",
            "--bad",
            "2",
            "--fleet",
            "3000",
            "--severities",
            "10",
            "--waves",
            "0.02,1",
            "--soak-s",
            "900",
            "--jobs",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in (
        "healthy_runs",
        "false_halts",
        "false_halt_rate",
        "bad_runs",
        "missed_bad",
        "median_devices_exposed",
        "median_seconds_to_halt",
        "by_severity",
        "params",
        "seed",
    ):
        assert key in result
    assert result["healthy_runs"] == 2
    assert result["bad_runs"] == 2
    assert result["by_severity"]["10"]["halted"] == 2
    assert result["params"]["waves"] == [0.02, 1.0]
    assert "false halts" in completed.stderr
