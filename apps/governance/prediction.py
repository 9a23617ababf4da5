"""Predicting live combinations during and after a rollout, and the combination budget rule.

Pure functions over plain data (no queries): `selectors.rollout_prediction` reads the spread
and the plan, these functions do the arithmetic, the tests feed them hand-made fleets.

The model (docs/governance.md states it for people):

1. The population is the devices of the rollout's cohorts (and of the budgets' cohorts), grouped
   into *cells*: (combination, set of cohorts the device belongs to) → device count. Cells are
   exact: overlapping cohorts are counted once.
2. A wave draws from its cohort (or, for "the rest", from every earlier wave's cohort). Its size
   is computed as the engine does (`apps.rollouts.selection.wave_size`: a count, or a percent
   of the whole cohort rounded up), capped by the eligible devices: those not yet on every
   target version. Hardware support and locks held by other rollouts are ignored (the plan
   refuses unsupported hardware at creation; locks are transient).
3. Every chosen device succeeds and moves from its combination C to C with the target versions
   substituted (failures and rollbacks only keep devices where they were, i.e. fewer moves).
4. Which devices a wave takes mirrors the engine's stratified pick: first one device from each
   eligible combination (biggest first), then the rest proportionally to the spread of the
   remaining eligible devices (largest-remainder rounding). Small waves therefore touch as many
   combinations as they can: the prediction errs towards *more* combinations, never fewer.
5. During a wave both a device's old and new combination are alive: the peak count of a wave is
   the combinations alive before it or after it. The share outside the top K is read after it.
6. A device that has reported no versions yet is in no combination (it is not counted as one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.rollouts.selection import wave_size

Versions = tuple[tuple[str, str], ...]
Scope = int | None  # None: the whole fleet; an int: a cohort id


def vkey(versions: dict[str, str]) -> Versions:
    return tuple(sorted((str(k), str(v)) for k, v in (versions or {}).items()))


def with_targets(versions: Versions, targets: dict[str, str]) -> Versions:
    merged = dict(versions)
    merged.update(targets)
    return vkey(merged)


def on_target(versions: Versions, targets: dict[str, str]) -> bool:
    current = dict(versions)
    return all(current.get(component) == version for component, version in targets.items())


@dataclass(frozen=True)
class Cell:
    """Devices sharing one combination and one cohort membership."""

    versions: Versions
    cohorts: frozenset[int]
    count: int


@dataclass(frozen=True)
class WavePlan:
    cohort: int | None  # None: "the rest" of the earlier waves' cohorts
    size_kind: str  # "count" | "percent"
    size_value: float
    label: str = ""


@dataclass(frozen=True)
class Limits:
    """A budget: at most `max_combinations` live, at most `max_outside_share` % outside the top K."""

    max_combinations: int | None = None
    max_outside_share: float | None = None
    top_k: int = 3


@dataclass(frozen=True)
class SpreadMetrics:
    devices: int
    combinations: int
    outside_share: float  # percent of devices outside the top K combinations


@dataclass
class ScopeStep:
    peak_combinations: int  # alive at any moment of the wave (before ∪ after)
    after: SpreadMetrics


@dataclass
class Step:
    index: int
    label: str
    devices: int  # devices the wave moves
    new_combinations: list[Versions]
    scopes: dict[Scope, ScopeStep]


@dataclass(frozen=True)
class Breach:
    scope: Scope
    wave: int | None  # index of the wave; None: the current spread
    kind: str  # "combinations" | "outside_share"
    value: float
    limit: float
    current: float
    top_k: int = 3

    def describe(self, scope_name: str = "") -> str:
        where = scope_name or ("fleet" if self.scope is None else f"cohort #{self.scope}")
        when = "now" if self.wave is None else f"during wave {self.wave + 1}"
        if self.kind == "combinations":
            return f"{where}: {int(self.value)} live combinations {when} (budget {int(self.limit)}, now {int(self.current)})"
        return (f"{where}: {self.value:.1f}% of devices outside the top {self.top_k} combinations {when} "
                f"(budget {self.limit:g}%, now {self.current:.1f}%)")


@dataclass
class Prediction:
    current: dict[Scope, SpreadMetrics]
    steps: list[Step] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)

    @property
    def after(self) -> dict[Scope, SpreadMetrics]:
        if not self.steps:
            return dict(self.current)
        return {scope: step.after for scope, step in self.steps[-1].scopes.items()}

    @property
    def breaks_budget(self) -> bool:
        return bool(self.breaches)


def spread_metrics(spread: dict[Versions, int], top_k: int) -> SpreadMetrics:
    counts = sorted((n for v, n in spread.items() if v and n > 0), reverse=True)
    devices = sum(counts)
    top = sum(counts[: max(top_k, 0)])
    share = 100.0 * (devices - top) / devices if devices else 0.0
    return SpreadMetrics(devices=devices, combinations=len(counts), outside_share=share)


def _alive(spread: dict[Versions, int]) -> set[Versions]:
    return {v for v, n in spread.items() if v and n > 0}


def allocate(capacities: list[tuple[Versions, int]], take: int) -> list[int]:
    """Split `take` devices over cells: one per distinct combination first (biggest first),
    then the rest proportionally to what each cell has left (largest remainder)."""
    take = max(0, min(take, sum(c for _, c in capacities)))
    given = [0] * len(capacities)
    order = sorted(range(len(capacities)), key=lambda i: (-capacities[i][1], capacities[i][0]))
    seen: set[Versions] = set()
    for i in order:
        if take - sum(given) <= 0:
            break
        versions, cap = capacities[i]
        if cap > 0 and versions not in seen:
            given[i] = 1
            seen.add(versions)
    rest = take - sum(given)
    left = [cap - g for (_, cap), g in zip(capacities, given, strict=True)]
    total_left = sum(left)
    if rest > 0 and total_left > 0:
        quotas = [rest * cap / total_left for cap in left]
        floors = [int(q) for q in quotas]
        remainder = rest - sum(floors)
        by_fraction = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), -left[i], capacities[i][0]))
        for i in by_fraction[:remainder]:
            floors[i] += 1
        given = [g + f for g, f in zip(given, floors, strict=True)]
    return given


def predict(
    *,
    fleet: dict[Versions, int],
    cells: list[Cell],
    targets: dict[str, str],
    waves: list[WavePlan],
    limits: dict[Scope, Limits] | None = None,
) -> Prediction:
    """Walk the plan wave by wave; report per scope the live combinations and the top-K share.

    `fleet` is the whole fleet's spread; `cells` must hold every device of the waves' cohorts and
    of every cohort named in `limits`. The fleet scope (None) is always reported.
    """
    limits = dict(limits or {})
    scopes: dict[Scope, int] = {scope: lim.top_k for scope, lim in limits.items()}
    scopes.setdefault(None, limits[None].top_k if None in limits else 3)
    state: dict[tuple[Versions, frozenset[int]], int] = {}
    for cell in cells:
        state[(cell.versions, cell.cohorts)] = state.get((cell.versions, cell.cohorts), 0) + cell.count
    fleet = {v: n for v, n in fleet.items() if n > 0}

    def scope_spread(scope: Scope) -> dict[Versions, int]:
        if scope is None:
            return dict(fleet)
        spread: dict[Versions, int] = {}
        for (versions, cohorts), n in state.items():
            if scope in cohorts and n > 0:
                spread[versions] = spread.get(versions, 0) + n
        return spread

    current = {scope: spread_metrics(scope_spread(scope), k) for scope, k in scopes.items()}
    prediction = Prediction(current=current)
    seen_cohorts: list[int] = []
    for index, wave in enumerate(waves):
        pool = {wave.cohort} if wave.cohort is not None else set(seen_cohorts)
        if wave.cohort is not None and wave.cohort not in seen_cohorts:
            seen_cohorts.append(wave.cohort)
        in_pool = [key for key, n in state.items() if n > 0 and key[1] & pool]
        cohort_size = sum(state[key] for key in in_pool)
        eligible = sorted((key for key in in_pool if not on_target(key[0], targets)), key=lambda k: (k[0], sorted(k[1])))
        size = wave_size(wave.size_kind, wave.size_value, cohort_size)
        moves = allocate([(key[0], state[key]) for key in eligible], size)
        before = {scope: scope_spread(scope) for scope in scopes}
        new_combinations: set[Versions] = set()
        for key, n in zip(eligible, moves, strict=True):
            if n <= 0:
                continue
            versions, cohorts = key
            moved = with_targets(versions, targets)
            state[key] -= n
            state[(moved, cohorts)] = state.get((moved, cohorts), 0) + n
            if versions in fleet:
                fleet[versions] -= n
                if fleet[versions] <= 0:
                    del fleet[versions]
            if moved not in fleet:
                new_combinations.add(moved)
            fleet[moved] = fleet.get(moved, 0) + n
        step_scopes = {}
        for scope, k in scopes.items():
            after = scope_spread(scope)
            step_scopes[scope] = ScopeStep(
                peak_combinations=len(_alive(before[scope]) | _alive(after)), after=spread_metrics(after, k)
            )
        prediction.steps.append(Step(index=index, label=wave.label or f"Wave {index + 1}", devices=sum(moves),
                                     new_combinations=sorted(new_combinations), scopes=step_scopes))
    prediction.breaches = budget_breaches(prediction, limits)
    return prediction


def budget_breaches(prediction: Prediction, limits: dict[Scope, Limits]) -> list[Breach]:
    """The budget rule: a wave breaks a budget when its prediction exceeds the limit *and* is
    worse than the spread now. A fleet already over budget may still run a rollout that does
    not make it worse (a converging rollout), never one that adds to the excess."""
    breaches: list[Breach] = []
    for scope, limit in limits.items():
        now = prediction.current.get(scope)
        if now is None:
            continue
        for step in prediction.steps:
            got = step.scopes[scope]
            if limit.max_combinations is not None and got.peak_combinations > limit.max_combinations \
                    and got.peak_combinations > now.combinations:
                breaches.append(Breach(scope, step.index, "combinations", got.peak_combinations,
                                       limit.max_combinations, now.combinations))
            share = got.after.outside_share
            if limit.max_outside_share is not None and share > limit.max_outside_share + 1e-9 \
                    and share > now.outside_share + 1e-9:
                breaches.append(Breach(scope, step.index, "outside_share", share, limit.max_outside_share,
                                       now.outside_share, limit.top_k))
    return breaches


def current_breaches(spread: dict[Versions, int], limit: Limits, scope: Scope = None) -> list[Breach]:
    """Is a spread over its budget right now (the periodic breach alert)?"""
    now = spread_metrics(spread, limit.top_k)
    found = []
    if limit.max_combinations is not None and now.combinations > limit.max_combinations:
        found.append(Breach(scope, None, "combinations", now.combinations, limit.max_combinations, now.combinations))
    if limit.max_outside_share is not None and now.outside_share > limit.max_outside_share + 1e-9:
        found.append(Breach(scope, None, "outside_share", now.outside_share, limit.max_outside_share,
                            now.outside_share, limit.top_k))
    return found
