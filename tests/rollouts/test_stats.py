"""The halt statistics: exact tails, decisions on known inputs, words for people. No database needed."""

import json
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.rollouts.stats import (
    CONDITIONAL_TEST,
    NO_TEST,
    ONE_SAMPLE_TEST,
    RateSample,
    absolute_failure_check,
    binom_sf,
    fmt_p,
    hypergeom_sf,
    poisson_sf,
    poisson_spike_test,
    proportion_spike_test,
)


def exact_binom_sf(k: int, n: int, p: Fraction) -> Fraction:
    return sum((math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)), Fraction(0))


def log_space_tail(k: int, n: int, p: float, terms: int = 4000) -> float:
    """Brute force in log space: the sum of pmf terms k .. k+terms (the rest is negligible in a far tail)."""
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, min(n, k + terms) + 1)
    ]
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(x - top) for x in logs)


# ---------------------------------------------------------------- binom_sf


@pytest.mark.parametrize("p", [Fraction(1, 1000), Fraction(1, 7), Fraction(1, 2), Fraction(9, 10)])
def test_it_matches_exact_binomial_sums_for_small_n(p):
    for n in range(0, 41, 4):
        for k in range(n + 2):
            expected = float(exact_binom_sf(k, n, p)) if k <= n else 0.0
            got = binom_sf(k, n, float(p))
            assert got == pytest.approx(expected, rel=1e-11, abs=1e-300), (k, n, p)


def test_it_handles_binomial_edge_cases():
    assert binom_sf(0, 10, 0.3) == 1.0
    assert binom_sf(-5, 10, 0.3) == 1.0
    assert binom_sf(11, 10, 0.3) == 0.0
    assert binom_sf(1, 0, 0.3) == 0.0
    assert binom_sf(3, 10, 0.0) == 0.0
    assert binom_sf(3, 10, 1.0) == 1.0
    assert math.isnan(binom_sf(3, 10, math.nan))


def test_it_stays_exact_at_a_million_trials():
    n = 10**6
    # P[X >= n/2] = 1/2 + pmf(n/2)/2 by symmetry, and pmf(n/2) has a closed form.
    half_pmf = math.exp(math.lgamma(n + 1) - 2 * math.lgamma(n // 2 + 1) - n * math.log(2))
    assert binom_sf(n // 2, n, 0.5) == pytest.approx(0.5 + half_pmf / 2, rel=1e-9)
    assert binom_sf(n, n, 0.999999) == pytest.approx(0.999999**n, rel=1e-9)
    assert binom_sf(1, n, 1e-7) == pytest.approx(-math.expm1(n * math.log1p(-1e-7)), rel=1e-9)
    # A far tail (mean 1,000, sd 32): no cancellation to zero, no overflow.
    far = binom_sf(1200, n, 0.001)
    assert 0 < far < 1e-8
    assert far == pytest.approx(log_space_tail(1200, n, 0.001), rel=1e-8)
    assert binom_sf(5000, n, 0.001) == pytest.approx(log_space_tail(5000, n, 0.001), rel=1e-7)
    # Upper and lower tails add up to one: P[X >= k] + P[n - X >= n - k + 1] = 1.
    for k in (999, 1000, 1050, 500_300):
        p = 0.001 if k < 2000 else 0.5
        assert binom_sf(k, n, p) + binom_sf(n - k + 1, n, 1 - p) == pytest.approx(1.0, abs=1e-12)


def test_it_computes_poisson_and_fisher_tails_exactly():
    for mu in (0.3, 4.0, 55.0):
        for k in range(3 * int(mu) + 8):

            def pmf(i: int, mu: float = mu) -> float:
                return math.exp(-mu + i * math.log(mu) - math.lgamma(i + 1))

            # Sum the smaller side, so the reference itself keeps its digits.
            expected = math.fsum(map(pmf, range(k, k + 600))) if k > mu else 1 - math.fsum(map(pmf, range(k)))
            assert poisson_sf(k, mu) == pytest.approx(expected, rel=1e-10, abs=1e-15)
    assert poisson_sf(40, 1.0) == pytest.approx(math.exp(-1 - math.lgamma(41)) * (1 + 1 / 41 + 1 / (41 * 42)), rel=1e-3)
    for total, marked, drawn in ((30, 9, 12), (57, 20, 33), (10, 0, 5)):
        for k in range(-1, drawn + 2):
            expected = Fraction(
                sum(math.comb(marked, x) * math.comb(total - marked, drawn - x) for x in range(max(k, 0), drawn + 1)),
                math.comb(total, drawn),
            )
            assert hypergeom_sf(k, total, marked, drawn) == pytest.approx(float(expected), rel=1e-11, abs=1e-300)


# ---------------------------------------------------------------- poisson_spike_test


def test_it_does_not_halt_without_events():
    decision = poisson_spike_test(RateSample(0, 50.0, 100), RateSample(0, 5000.0, 5000))
    assert decision.halt is False
    assert decision.sufficient is True
    assert decision.p_value == 1.0
    assert decision.ratio == 0.0


def test_it_halts_when_crash_rate_spikes():
    decision = poisson_spike_test(RateSample(40, 10.0, 25), RateSample(10, 1000.0, 2000))
    assert decision.halt is True
    assert decision.sufficient is True
    assert decision.p_value < 1e-6
    # The conditional test: 40 of 50 crashes where 10/1010 of the exposure is.
    assert decision.p_value == pytest.approx(float(exact_binom_sf(40, 50, Fraction(10, 1010))), rel=1e-9)
    assert decision.updated_rate == 4.0
    assert decision.baseline_rate == 0.01
    assert decision.ratio == pytest.approx(400.0)
    assert decision.test == CONDITIONAL_TEST


def test_it_does_not_halt_on_equal_rates():
    decision = poisson_spike_test(RateSample(21, 100.0, 400), RateSample(2000, 10_000.0, 40_000))
    assert decision.halt is False
    assert decision.sufficient is True
    assert decision.p_value > 0.3
    assert "no halt" in decision.summary


def test_it_is_insufficient_below_min_devices_even_on_a_huge_spike():
    decision = poisson_spike_test(RateSample(500, 10.0, 19), RateSample(10, 1000.0, 2000))
    assert decision.sufficient is False
    assert decision.halt is False
    assert decision.p_value < 1e-6  # computed anyway, for the evidence
    assert "19 updated devices reported (need 20)" in decision.summary


def test_it_is_insufficient_below_min_exposure():
    decision = poisson_spike_test(RateSample(30, 4.0, 40), RateSample(10, 1000.0, 2000))
    assert (decision.sufficient, decision.halt) == (False, False)
    assert "4.0 updated device-hours (need 5)" in decision.summary


def test_it_does_not_halt_on_a_significant_but_small_effect():
    # A million device-hours make a 20% rise overwhelmingly significant; it is still not a spike.
    decision = poisson_spike_test(RateSample(24_000, 100_000.0, 50_000), RateSample(200_000, 1_000_000.0, 500_000))
    assert decision.p_value < 1e-20
    assert decision.ratio == pytest.approx(1.2)
    assert decision.halt is False
    assert "ratio below 1.75×" in decision.summary


def test_it_needs_min_events():
    # 2 crashes against a baseline of zero: p is tiny and the ratio huge, but two events are anecdotes.
    decision = poisson_spike_test(RateSample(2, 50.0, 100), RateSample(0, 100_000.0, 50_000))
    assert decision.p_value < 0.001
    assert decision.halt is False
    assert "2 events (need 3)" in decision.summary
    assert poisson_spike_test(RateSample(3, 50.0, 100), RateSample(0, 100_000.0, 50_000)).halt is True


def test_it_falls_back_to_the_prior_rate_when_the_baseline_is_empty():
    updated = RateSample(12, 20.0, 40)
    empty = RateSample(0, 0.0, 0)
    without_prior = poisson_spike_test(updated, empty)
    assert (without_prior.sufficient, without_prior.halt, without_prior.test) == (False, False, NO_TEST)
    assert "no prior rate" in without_prior.summary
    with_prior = poisson_spike_test(updated, empty, prior_rate=0.05)
    assert with_prior.test == ONE_SAMPLE_TEST
    assert with_prior.sufficient is True
    assert with_prior.baseline_rate == 0.05
    # P[Poisson(1.0) >= 12]
    assert with_prior.p_value == pytest.approx(poisson_sf(12, 1.0), rel=1e-12)
    assert with_prior.halt is True
    assert "expected (prior rate" in with_prior.summary
    # A prior the updated devices match is no spike.
    assert poisson_spike_test(updated, empty, prior_rate=0.6).halt is False


@pytest.mark.parametrize(
    ("updated", "baseline"),
    [
        (RateSample(-3, -1.0, -7), RateSample(-1, math.nan, 0)),
        (RateSample(5, 0.0, 30), RateSample(5, 0.0, 30)),
        (RateSample(5, math.inf, 30), RateSample(5, 10.0, 30)),
        (RateSample(None, None, None), RateSample(None, None, None)),  # an aggregate over no rows
        (RateSample(10**9, 1e-9, 10**7), RateSample(0, 1e12, 10**8)),
    ],
)
def test_it_survives_degenerate_inputs(updated, baseline):
    decision = poisson_spike_test(updated, baseline)
    assert 0.0 <= decision.p_value <= 1.0
    assert math.isfinite(decision.ratio)
    json.dumps(decision.as_evidence(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    x1=st.integers(0, 10**6),
    e1=st.floats(0, 1e7),
    d1=st.integers(0, 10**6),
    x2=st.integers(0, 10**6),
    e2=st.floats(0, 1e7),
    d2=st.integers(0, 10**6),
)
def test_it_never_raises_and_keeps_p_in_range(x1, e1, d1, x2, e2, d2):
    decision = poisson_spike_test(RateSample(x1, e1, d1), RateSample(x2, e2, d2))
    assert 0.0 <= decision.p_value <= 1.0
    assert decision.halt is False or decision.sufficient


def test_it_states_the_numbers_for_people():
    decision = poisson_spike_test(
        RateSample(41, 1000.0, 37), RateSample(30, 10_000.0, 1204), alpha=0.001, min_exposure_h=5
    )
    assert decision.halt is True
    assert decision.summary == (
        "crash rate 4.1 per 100 device-hours on 37 updated devices vs 0.3 on 1,204 baseline devices (13.7×, p<0.001)"
    )
    other = poisson_spike_test(RateSample(41, 1000.0, 37), RateSample(30, 10_000.0, 1204), metric="app_restarts")
    assert other.summary.startswith("app restart rate 4.1 per 100 device-hours")


def test_it_gives_json_evidence_with_every_number_and_parameter():
    decision = poisson_spike_test(RateSample(40, 10.0, 25), RateSample(0, 1000.0, 2000), min_ratio=2.0)
    evidence = json.loads(json.dumps(decision.as_evidence(), allow_nan=False))
    assert evidence["halt"] is True
    assert evidence["parameters"] == {
        "alpha": 1e-5,
        "min_devices": 20,
        "min_exposure_h": 5.0,
        "min_ratio": 2.0,
        "min_events": 3,
        "prior_rate": None,
    }
    assert evidence["inputs"]["updated"] == {"events": 40, "exposure_h": 10.0, "devices": 25, "affected": 0}
    assert evidence["inputs"]["baseline"]["exposure_h"] == 1000.0
    for key in ("p_value", "updated_rate", "baseline_rate", "ratio", "test", "metric", "summary", "sufficient"):
        assert key in evidence
    assert evidence["ratio"] == pytest.approx(4.0 / 1e-12)  # a zero baseline rate stays finite


# ---------------------------------------------------------------- proportions and absolute limits


def test_it_halts_when_a_larger_share_of_updated_devices_fails():
    decision = proportion_spike_test(10, 50, 100, 10_000, metric="failed_installs")
    assert decision.halt is True
    assert decision.p_value == pytest.approx(hypergeom_sf(10, 10_050, 110, 50))
    assert decision.p_value < 1e-6
    assert decision.summary.startswith("failed install share 20.0% of 50 updated devices vs 1.0% of 10,000 baseline")
    quiet = proportion_spike_test(1, 50, 200, 10_000, metric="failed_installs")
    assert quiet.halt is False
    small = proportion_spike_test(10, 12, 100, 10_000, metric="failed_installs")
    assert (small.sufficient, small.halt) == (False, False)
    odd = proportion_spike_test(70, 50, -4, 0, metric="crashes")
    assert odd.halt is False
    json.dumps(odd.as_evidence(), allow_nan=False)


def test_it_divides_the_failure_percent_by_devices_that_reported():
    # 5 failures of 20 reports is 25%, although the wave has 1,000 devices (hawkBit would say 0.5%).
    halt, words = absolute_failure_check(5, 20, max_failed_count=None, max_failed_percent=20.0)
    assert halt is True
    assert words == "5 of 20 reporting devices failed (25.0%): above the limit of 20.0%"
    assert absolute_failure_check(5, 40, max_failed_count=None, max_failed_percent=20.0)[0] is False


def test_it_waits_for_min_reported_before_using_the_percent():
    halt, words = absolute_failure_check(2, 3, max_failed_count=None, max_failed_percent=20.0)
    assert halt is False
    assert "from 10 reporting devices" in words


def test_it_halts_above_the_failed_count():
    assert absolute_failure_check(3, 3, max_failed_count=3, max_failed_percent=None)[0] is False
    halt, words = absolute_failure_check(4, 4, max_failed_count=3, max_failed_percent=None)
    assert halt is True
    assert words == "4 of 4 reporting devices failed (100.0%): more than the limit of 3 failed devices"
    assert absolute_failure_check(1, 500, max_failed_count=0, max_failed_percent=None)[0] is True
    assert absolute_failure_check(0, 0, max_failed_count=None, max_failed_percent=None) == (
        False,
        "0 of 0 reporting devices failed (0.0%); within limits",
    )


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "p<0.001"),
        (0.00099, "p<0.001"),
        (0.001, "p=0.001"),
        (0.0123, "p=0.012"),
        (0.43, "p=0.43"),
        (1.0, "p=1.00"),
        (math.nan, "p=n/a"),
    ],
)
def test_it_formats_p_values(p, text):
    assert fmt_p(p) == text
