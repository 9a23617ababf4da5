"""The statistics behind an automatic halt: is the updated devices' event rate a spike over the baseline?

Pure functions on counts, no I/O, no Django, no numpy: the rollout engine calls them on every
evaluation (every few seconds while a wave runs), and the halt simulation calls them hundreds of
thousands of times, so they must be cheap and must never raise on odd counts.

Method (docs/halting.md has the justification and the measured error rates):

- Rates (events per device-hour): the exact conditional test for two Poisson rates. Given
  n = x1 + x2 events, under H0 (same rate) x1 ~ Binomial(n, e1 / (e1 + e2)), e = exposure;
  one-sided p = P[X >= x1]. If the baseline has too little exposure, a one-sample exact Poisson
  test against a prior rate, when one is given.
- Proportions (devices with >= 1 event, failed installs): Fisher's exact test, one-sided.
- A halt needs p < alpha AND an effect of at least `min_ratio` AND minimum sample sizes: the
  evaluation is repeated many times over a rollout, and real fleets are over-dispersed, so the
  p-value alone would halt healthy rollouts too often.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Defaults of the spike gate, tuned by bench/halt_simulation.py (numbers in docs/halting.md).
DEFAULT_ALPHA = 1e-5
DEFAULT_MIN_DEVICES = 20
DEFAULT_MIN_EXPOSURE_H = 5.0
DEFAULT_MIN_RATIO = 1.75
DEFAULT_MIN_EVENTS = 3

CONDITIONAL_TEST = "conditional binomial test on Poisson rates (one-sided)"
ONE_SAMPLE_TEST = "one-sample exact Poisson test against the prior rate (one-sided)"
NO_TEST = "none (baseline too small and no prior rate)"
FISHER_TEST = "Fisher's exact test on proportions (one-sided)"

# Guards a ratio against a zero baseline without making it infinite (JSON has no infinity).
_TINY = 1e-12
_EPS = 1e-15
_FPMIN = 1e-300

METRIC_WORDS = {
    "crashes": "crash",
    "failed_health_checks": "failed health check",
    "reboots": "reboot",
    "app_restarts": "app restart",
    "failed_installs": "failed install",
}


@dataclass(frozen=True)
class RateSample:
    """Events and exposure of one group of devices over one window."""

    events: int  # e.g. crashes summed over the window
    exposure_h: float  # device-hours observed in the window (sum of report intervals)
    devices: int  # distinct devices that reported in the window
    affected: int = 0  # devices with >= 1 event (for the proportion view)


@dataclass(frozen=True)
class SpikeDecision:
    """The outcome of one spike test, with every number a person needs to check it."""

    halt: bool
    sufficient: bool  # enough sample to decide at all (min devices / min exposure)
    p_value: float
    updated_rate: float  # events per device-hour (a proportion for the proportion test)
    baseline_rate: float
    ratio: float  # updated_rate / max(baseline_rate, tiny)
    test: str
    metric: str
    summary: str
    # The inputs and parameters behind the numbers above, for the audit trail.
    inputs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    parameters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def as_evidence(self) -> dict:
        """A JSON-serialisable record: the decision, its inputs and the parameters used."""
        evidence = asdict(self)
        for key in ("p_value", "updated_rate", "baseline_rate", "ratio"):
            evidence[key] = _json_float(evidence[key])
        return evidence


# ---------------------------------------------------------------- distributions


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p), exact to ~1e-13 relative, for n up to 10^6 and beyond.

    Uses P[X >= k] = I_p(k, n - k + 1) (regularized incomplete beta), evaluated in log space with
    a continued fraction, so huge n neither overflows nor loses the small tail to cancellation.
    """
    if not _finite(p):
        return math.nan
    k, n = int(k), int(n)
    if k <= 0:
        return 1.0
    if n < k:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return _betainc(float(k), float(n - k + 1), p)


def poisson_sf(k: int, mu: float) -> float:
    """P[X >= k] for X ~ Poisson(mu): the regularized lower incomplete gamma P(k, mu)."""
    k = int(k)
    if k <= 0:
        return 1.0
    if not _finite(mu) or mu <= 0.0:
        return 0.0
    return _gammainc_lower(float(k), mu)


def hypergeom_sf(k: int, total: int, marked: int, drawn: int) -> float:
    """P[X >= k] for X ~ Hypergeometric(total, marked, drawn): the one-sided Fisher exact p-value.

    Sums the pmf away from the mode (from k upwards, or the complement downwards), stopping once
    the terms no longer change the sum: cost ~ a few standard deviations, not the support size.
    """
    total, marked, drawn, k = int(total), int(marked), int(drawn), int(k)
    if total <= 0 or not (0 <= marked <= total) or not (0 <= drawn <= total):
        return math.nan
    low, high = max(0, drawn - (total - marked)), min(marked, drawn)
    if k <= low:
        return 1.0
    if k > high:
        return 0.0
    mode = (drawn + 1) * (marked + 1) // (total + 2)
    if k > mode:
        return min(1.0, _hypergeom_run(k, high, +1, total, marked, drawn))
    return max(0.0, 1.0 - _hypergeom_run(k - 1, low, -1, total, marked, drawn))


def _hypergeom_run(start: int, stop: int, step: int, total: int, marked: int, drawn: int) -> float:
    def log_pmf(x: int) -> float:
        return _log_choose(marked, x) + _log_choose(total - marked, drawn - x) - _log_choose(total, drawn)

    term = math.exp(log_pmf(start))
    acc = term
    x = start
    while x != stop:
        if step > 0:
            term *= (marked - x) * (drawn - x) / ((x + 1) * (total - marked - drawn + x + 1))
        else:
            term *= x * (total - marked - drawn + x) / ((marked - x + 1) * (drawn - x + 1))
        x += step
        acc += term
        if term <= acc * _EPS:
            break
    return acc


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), a, b > 0, 0 < x < 1 (Numerical Recipes 6.4)."""
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    direct = x < (a + 1.0) / (a + b + 2.0)
    if log_front < -1000.0:
        # Below any double, whatever the continued fraction says (it is O(a + b) at most): skip it.
        return 0.0 if direct else 1.0
    # The continued fraction converges fast only on this side of the mean; use the symmetry
    # I_x(a, b) = 1 - I_(1-x)(b, a) otherwise, which also keeps small tails free of cancellation.
    if direct:
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta, by the modified Lentz method."""
    # Iterations grow like sqrt(max(a, b)); the bound only stops a pathological input from spinning.
    max_iter = 200 + int(20 * math.sqrt(max(a, b)))
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
        c = 1.0 + aa / c
        c = c if abs(c) > _FPMIN else _FPMIN
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
        c = 1.0 + aa / c
        c = c if abs(c) > _FPMIN else _FPMIN
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def _gammainc_lower(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) (Numerical Recipes 6.2): series or continued fraction."""
    log_front = a * math.log(x) - x - math.lgamma(a)
    if log_front < -1000.0:
        return 0.0 if x < a + 1.0 else 1.0
    max_iter = 200 + int(20 * math.sqrt(a + x))
    if x < a + 1.0:
        # Series: small P is computed directly, so a far right tail keeps its digits.
        term = total = 1.0 / a
        ap = a
        for _ in range(max_iter):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return min(1.0, total * math.exp(log_front))
    # Continued fraction for Q = 1 - P (modified Lentz).
    b = x + 1.0 - a
    c = 1.0 / _FPMIN
    d = 1.0 / b
    h = d
    for i in range(1, max_iter + 1):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
        c = b + an / c
        c = c if abs(c) > _FPMIN else _FPMIN
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return max(0.0, 1.0 - math.exp(log_front) * h)


# ---------------------------------------------------------------- decisions


def poisson_spike_test(
    updated: RateSample,
    baseline: RateSample,
    *,
    metric: str = "crashes",
    alpha: float = DEFAULT_ALPHA,
    min_devices: int = DEFAULT_MIN_DEVICES,
    min_exposure_h: float = DEFAULT_MIN_EXPOSURE_H,
    min_ratio: float = DEFAULT_MIN_RATIO,
    min_events: int = DEFAULT_MIN_EVENTS,
    prior_rate: float | None = None,
) -> SpikeDecision:
    """Halt when the updated devices' event rate is significantly AND materially above the baseline's."""
    x1, e1, d1 = _count(updated.events), _hours(updated.exposure_h), _count(updated.devices)
    x2, e2, d2 = _count(baseline.events), _hours(baseline.exposure_h), _count(baseline.devices)
    parameters = {
        "alpha": alpha,
        "min_devices": min_devices,
        "min_exposure_h": min_exposure_h,
        "min_ratio": min_ratio,
        "min_events": min_events,
        "prior_rate": prior_rate,
    }
    inputs = {
        "updated": {"events": x1, "exposure_h": e1, "devices": d1, "affected": _count(updated.affected)},
        "baseline": {"events": x2, "exposure_h": e2, "devices": d2, "affected": _count(baseline.affected)},
    }
    updated_rate = x1 / e1 if e1 > 0 else 0.0
    updated_ok = d1 >= min_devices and e1 >= min_exposure_h
    # A baseline of a handful of devices is mostly their individual quirks: not a reference.
    baseline_ok = d2 >= min_devices and e2 >= min_exposure_h and e2 > 0
    prior_ok = prior_rate is not None and _finite(prior_rate) and prior_rate > 0

    if baseline_ok:
        test, baseline_rate = CONDITIONAL_TEST, x2 / e2
        p_value = binom_sf(x1, x1 + x2, e1 / (e1 + e2)) if e1 > 0 else 1.0
    elif prior_ok:
        test, baseline_rate = ONE_SAMPLE_TEST, float(prior_rate)
        p_value = poisson_sf(x1, baseline_rate * e1)
    else:
        test, baseline_rate, p_value = NO_TEST, (x2 / e2 if e2 > 0 else 0.0), 1.0
    if not _finite(p_value):
        p_value = 1.0
    ratio = updated_rate / max(baseline_rate, _TINY)
    sufficient = updated_ok and (baseline_ok or prior_ok)
    halt = sufficient and x1 >= min_events and ratio >= min_ratio and p_value < alpha

    rate_words = f"{_metric_words(metric)} rate"
    reference = (
        f"{_per100(baseline_rate)} on {d2:,} baseline devices"
        if test != ONE_SAMPLE_TEST
        else f"{_per100(baseline_rate)} expected (prior rate; baseline too small)"
    )
    head = (
        f"{rate_words} {_per100(updated_rate)} per 100 device-hours on {d1:,} updated devices vs {reference}"
        f" ({_fmt_ratio(ratio)}, {fmt_p(p_value)})"
    )
    if not sufficient:
        summary = f"{head}; not enough data to decide: {_shortfall(d1, e1, d2, e2, parameters, prior_ok)}"
    elif halt:
        summary = head
    else:
        summary = f"{head}; no halt: {_why_not(x1, ratio, p_value, parameters)}"
    return SpikeDecision(
        halt=halt,
        sufficient=sufficient,
        p_value=p_value,
        updated_rate=updated_rate,
        baseline_rate=baseline_rate,
        ratio=ratio,
        test=test,
        metric=metric,
        summary=summary,
        inputs=inputs,
        parameters=parameters,
    )


def proportion_spike_test(
    updated_failed: int,
    updated_n: int,
    baseline_failed: int,
    baseline_n: int,
    *,
    metric: str,
    alpha: float = DEFAULT_ALPHA,
    min_devices: int = DEFAULT_MIN_DEVICES,
    min_ratio: float = DEFAULT_MIN_RATIO,
) -> SpikeDecision:
    """Halt when a larger share of updated devices is affected than of baseline devices (Fisher, one-sided)."""
    n1, n2 = _count(updated_n), _count(baseline_n)
    # More failures than devices is a caller's counting slip; clamp rather than raise mid-rollout.
    f1, f2 = min(_count(updated_failed), n1), min(_count(baseline_failed), n2)
    parameters = {"alpha": alpha, "min_devices": min_devices, "min_ratio": min_ratio}
    inputs = {"updated": {"failed": f1, "n": n1}, "baseline": {"failed": f2, "n": n2}}
    share1 = f1 / n1 if n1 else 0.0
    share2 = f2 / n2 if n2 else 0.0
    sufficient = n1 >= min_devices and n2 >= min_devices
    p_value = hypergeom_sf(f1, n1 + n2, f1 + f2, n1) if n1 and n2 else 1.0
    if not _finite(p_value):
        p_value = 1.0
    ratio = share1 / max(share2, _TINY)
    halt = sufficient and f1 > 0 and ratio >= min_ratio and p_value < alpha

    head = (
        f"{_metric_words(metric)} share {_pct(share1)} of {n1:,} updated devices vs {_pct(share2)} of"
        f" {n2:,} baseline devices ({_fmt_ratio(ratio)}, {fmt_p(p_value)})"
    )
    if not sufficient:
        summary = f"{head}; not enough data to decide: need {min_devices} devices on each side"
    elif halt:
        summary = head
    else:
        summary = f"{head}; no halt: {_why_not(f1, ratio, p_value, {**parameters, 'min_events': 1})}"
    return SpikeDecision(
        halt=halt,
        sufficient=sufficient,
        p_value=p_value,
        updated_rate=share1,
        baseline_rate=share2,
        ratio=ratio,
        test=FISHER_TEST,
        metric=metric,
        summary=summary,
        inputs=inputs,
        parameters=parameters,
    )


def absolute_failure_check(
    failed: int,
    reported: int,
    *,
    max_failed_count: int | None,
    max_failed_percent: float | None,
    min_reported: int = 10,
) -> tuple[bool, str]:
    """Halt when failures exceed a count, or a percent of the devices that REPORTED a result.

    The percent is of devices that reported, not of the wave: hawkBit divides by the whole
    group, so on a 10,000-device wave "20% failed" cannot trigger until 2,000 devices failed.
    Below `min_reported` the percent is not used (1 of 2 is not "50% failing").
    Returns (halt, words); the words describe the counts either way.
    """
    failed, reported = _count(failed), _count(reported)
    reported = max(reported, failed)
    percent = 100.0 * failed / reported if reported else 0.0
    counts = f"{failed:,} of {reported:,} reporting devices failed ({_fmt_percent(percent)})"
    if max_failed_count is not None and failed > max_failed_count:
        return True, f"{counts}: more than the limit of {max_failed_count:,} failed devices"
    if max_failed_percent is not None and reported >= min_reported and percent > max_failed_percent:
        return True, f"{counts}: above the limit of {_fmt_percent(max_failed_percent)}"
    if max_failed_percent is not None and reported < min_reported:
        return False, f"{counts}; the percent limit applies from {min_reported} reporting devices"
    return False, f"{counts}; within limits"


def fmt_p(p: float) -> str:
    """A p-value for people: "p<0.001", "p=0.012", "p=0.43"."""
    if not _finite(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    if p < 0.1:
        return f"p={p:.3f}"
    return f"p={p:.2f}"


# ---------------------------------------------------------------- helpers


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def _count(x: Any) -> int:
    """A count from a caller: None, NaN and negatives become 0 (an aggregate over no rows is None)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return 0
    return int(value) if math.isfinite(value) and value > 0 else 0


def _hours(x: Any) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _json_float(x: float) -> float | None:
    return x if _finite(x) else None


def _metric_words(metric: str) -> str:
    return METRIC_WORDS.get(metric, metric.replace("_", " "))


def _per100(rate: float) -> str:
    """Events per device-hour as "per 100 device-hours", with enough digits for small rates."""
    value = 100.0 * rate
    if value == 0:
        return "0"
    if value >= 1:
        return f"{value:,.1f}"
    return f"{value:.2g}"


def _pct(share: float) -> str:
    return _fmt_percent(100.0 * share)


def _fmt_percent(percent: float) -> str:
    if percent == 0 or percent >= 1:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%"


def _fmt_ratio(ratio: float) -> str:
    if ratio >= 1000:
        return ">999×"
    return f"{ratio:.1f}×" if ratio >= 0.1 or ratio == 0 else f"{ratio:.2g}×"


def _shortfall(d1: int, e1: float, d2: int, e2: float, params: dict[str, Any], prior_ok: bool) -> str:
    missing = []
    if d1 < params["min_devices"]:
        missing.append(f"{d1:,} updated devices reported (need {params['min_devices']})")
    if e1 < params["min_exposure_h"]:
        missing.append(f"{e1:,.1f} updated device-hours (need {params['min_exposure_h']:g})")
    baseline_small = d2 < params["min_devices"] or e2 < params["min_exposure_h"]
    if baseline_small and not prior_ok:
        missing.append(f"baseline of {d2:,} devices and {e2:,.1f} device-hours is too small, and no prior rate")
    return "; ".join(missing)


def _why_not(events: int, ratio: float, p_value: float, params: dict[str, Any]) -> str:
    reasons = []
    if events < params["min_events"]:
        reasons.append(f"{events} events (need {params['min_events']})")
    if ratio < params["min_ratio"]:
        reasons.append(f"ratio below {params['min_ratio']:g}×")
    if not p_value < params["alpha"]:
        reasons.append(f"not significant at alpha {params['alpha']:g}")
    return ", ".join(reasons) or "within limits"
