"""The prediction of live combinations per wave and the budget rule (pure functions, hand-made fleets)."""

from apps.governance.prediction import (
    Cell,
    Limits,
    WavePlan,
    allocate,
    current_breaches,
    predict,
    spread_metrics,
    vkey,
)

A = vkey({"os": "39.1", "app": "1.0"})
B = vkey({"os": "39.2", "app": "1.0"})
C = vkey({"os": "39.1", "app": "1.1"})
TARGET_OS = {"os": "40.0"}


def cells(spread: dict, cohort: int = 1) -> list[Cell]:
    return [Cell(versions=v, cohorts=frozenset({cohort}), count=n) for v, n in spread.items()]


def wave(cohort=1, size=100, kind="percent"):
    return WavePlan(cohort=cohort, size_kind=kind, size_value=size)


def test_it_predicts_nothing_changes_on_an_empty_fleet():
    result = predict(fleet={}, cells=[], targets=TARGET_OS, waves=[wave()], limits={None: Limits(max_combinations=1)})
    assert result.current[None].combinations == 0
    assert result.steps[0].devices == 0
    assert result.steps[0].scopes[None].peak_combinations == 0
    assert result.after[None].combinations == 0
    assert result.breaches == []


def test_it_converges_a_fleet_when_the_whole_cohort_moves_to_one_target():
    spread = {A: 60, B: 40}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=100)])
    step = result.steps[0]
    # os 39.1/app 1.0 and os 39.2/app 1.0 both become os 40.0/app 1.0.
    assert step.devices == 100
    assert step.new_combinations == [vkey({"os": "40.0", "app": "1.0"})]
    assert step.scopes[None].peak_combinations == 3  # both old ones and the new one alive during the wave
    assert result.after[None].combinations == 1
    assert result.after[None].outside_share == 0.0


def test_it_creates_one_new_combination_per_app_version_under_a_new_os():
    spread = {A: 50, C: 50}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=10)])
    # 10 devices: the stratified pick takes one from each combination first, so both get a new twin.
    assert result.steps[0].devices == 10
    assert len(result.steps[0].new_combinations) == 2
    assert result.steps[0].scopes[None].after.combinations == 4
    assert result.after[None].devices == 100


def test_it_moves_devices_proportionally_to_the_spread():
    spread = {A: 75, B: 25}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=40)])
    moved = vkey({"os": "40.0", "app": "1.0"})
    assert result.steps[0].devices == 40
    # 1 each first, then 38 split 74:24 → A gives 29+1=30, B gives 9+1=10 (largest remainder).
    assert allocate([(A, 75), (B, 25)], 40) == [30, 10]
    assert result.after[None].combinations == 3
    assert result.steps[0].new_combinations == [moved]


def test_it_counts_percent_waves_over_the_whole_cohort_and_skips_devices_on_target():
    on_target = vkey({"os": "40.0", "app": "1.0"})
    spread = {A: 50, on_target: 50}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=60), wave(size=60)])
    # 60% of 100 = 60 wanted, only 50 eligible: all of them move in wave 1, none in wave 2.
    assert [s.devices for s in result.steps] == [50, 0]
    assert result.after[None].combinations == 1


def test_it_takes_the_rest_of_earlier_cohorts_in_a_rest_wave():
    fleet = {A: 100, B: 30}
    population = [Cell(A, frozenset({1}), 100)]
    waves = [wave(cohort=1, size=10), WavePlan(cohort=None, size_kind="percent", size_value=100)]
    result = predict(fleet=fleet, cells=population, targets=TARGET_OS, waves=waves)
    assert [s.devices for s in result.steps] == [10, 90]
    # B (outside the cohort) is untouched: it and the new combination remain.
    assert result.after[None].combinations == 2


def test_it_counts_devices_in_overlapping_cohorts_once():
    population = [Cell(A, frozenset({1, 2}), 10), Cell(B, frozenset({2}), 10)]
    fleet = {A: 10, B: 10}
    result = predict(fleet=fleet, cells=population, targets=TARGET_OS,
                     waves=[wave(cohort=1, size=100), wave(cohort=2, size=100)])
    assert [s.devices for s in result.steps] == [10, 10]
    assert result.after[None].devices == 20


def test_it_computes_the_share_outside_the_top_k():
    spread = {A: 50, B: 30, C: 15, vkey({"os": "38"}): 5}
    assert spread_metrics(spread, 2).outside_share == 20.0
    assert spread_metrics(spread, 4).outside_share == 0.0
    assert spread_metrics({}, 3).outside_share == 0.0


def test_it_breaks_the_budget_when_a_wave_exceeds_the_combination_limit():
    spread = {A: 50, C: 50}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=10), wave(size=100)],
                     limits={None: Limits(max_combinations=3)})
    assert result.breaks_budget
    assert {(b.wave, b.kind) for b in result.breaches} == {(0, "combinations"), (1, "combinations")}
    assert result.breaches[0].value == 4 and result.breaches[0].limit == 3
    assert "4 live combinations during wave 1 (budget 3, now 2)" in result.breaches[0].describe()


def test_it_allows_a_converging_rollout_on_a_fleet_already_over_budget():
    spread = {A: 60, B: 40}  # 2 combinations now, budget 1: already over
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=100)],
                     limits={None: Limits(max_combinations=1)})
    # Peak 3 during the wave is worse than now (2): refused. The same plan in two cohorts
    # that each converge one combination at a time would still peak at 3.
    assert result.breaks_budget
    single = {A: 100, B: 1}
    converge = predict(fleet=single, cells=[Cell(A, frozenset({1}), 100)], targets={"os": "39.2"},
                       waves=[wave(size=100)], limits={None: Limits(max_combinations=1)})
    # os 39.1/app 1.0 → os 39.2/app 1.0 = B: no new combination; after: 1 combination.
    assert converge.steps[0].new_combinations == []
    assert converge.steps[0].scopes[None].peak_combinations == 2
    assert converge.after[None].combinations == 1
    assert not converge.breaks_budget


def test_it_breaks_the_budget_on_the_share_outside_the_top_k():
    spread = {A: 90, B: 10}
    result = predict(fleet=spread, cells=cells(spread), targets=TARGET_OS, waves=[wave(size=30)],
                     limits={None: Limits(max_outside_share=5.0, top_k=1)})
    # After the wave: A 63ish, new 30ish, B ~7: the share outside the top 1 rises above 5%.
    share = result.steps[0].scopes[None].after.outside_share
    assert share > 5.0
    assert [b.kind for b in result.breaches] == ["outside_share"]


def test_it_checks_a_cohort_budget_only_against_that_cohorts_devices():
    population = [Cell(A, frozenset({1}), 10), Cell(B, frozenset({2}), 10)]
    fleet = {A: 10, B: 10}
    result = predict(fleet=fleet, cells=population, targets=TARGET_OS, waves=[wave(cohort=1, size=50)],
                     limits={2: Limits(max_combinations=1), 1: Limits(max_combinations=1)})
    # Cohort 2 is untouched (1 combination); cohort 1 goes from 1 to 2.
    assert result.steps[0].scopes[2].peak_combinations == 1
    assert result.steps[0].scopes[1].peak_combinations == 2
    assert {b.scope for b in result.breaches} == {1}


def test_it_reports_a_current_breach_for_the_periodic_alert():
    spread = {A: 10, B: 10, C: 10}
    assert [b.kind for b in current_breaches(spread, Limits(max_combinations=2))] == ["combinations"]
    assert current_breaches(spread, Limits(max_combinations=3)) == []
    assert [b.kind for b in current_breaches(spread, Limits(max_outside_share=50, top_k=1))] == ["outside_share"]


def test_it_never_allocates_more_than_asked_or_available():
    assert allocate([(A, 3), (B, 2)], 100) == [3, 2]
    assert allocate([(A, 3), (B, 2)], 1) == [1, 0]
    assert allocate([], 5) == []
    assert sum(allocate([(A, 7), (B, 5), (C, 1)], 6)) == 6
