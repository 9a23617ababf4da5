"""The simulator's pairing profile: one app release crashes only on one OS version."""

import random

import pytest

from apps.simulator.fleetsim import HealthModel
from apps.simulator.profiles import (
    DEFAULT_PROFILE,
    ProfileError,
    profile_check,
    profile_mark_sick_pairing,
)


def without_pairings() -> dict:
    return profile_check({**DEFAULT_PROFILE, "combinations": []})


def test_it_makes_a_release_crash_only_on_the_named_os_version():
    profile = profile_mark_sick_pairing(without_pairings(), "vision=1.3@os=39.1", crash_per_hour=4.0)
    model = HealthModel(profile_check(profile))
    base = DEFAULT_PROFILE["baseline"]["crash_per_hour"]
    assert model.rates({"os": "39.1", "vision": "1.3"})["crashes"] == pytest.approx(base + 4.0)
    assert model.rates({"os": "39.2", "vision": "1.3"})["crashes"] == pytest.approx(base)
    assert model.rates({"os": "39.1", "vision": "1.2"})["crashes"] == pytest.approx(base)


def test_it_samples_many_more_crashes_on_the_sick_pairing():
    model = HealthModel(profile_mark_sick_pairing(without_pairings(), "vision=1.4@os=39.2"))
    rng = random.Random(7)
    sick = sum(model.sample({"os": "39.2", "vision": "1.4"}, 3600, rng)["crashes"] for _ in range(200))
    healthy = sum(model.sample({"os": "39.1", "vision": "1.4"}, 3600, rng)["crashes"] for _ in range(200))
    assert sick > 5 * healthy


@pytest.mark.parametrize("spec", ["vision=1.4", "vision=1.4@vision=1.3", "vision 1.4@os=39.2"])
def test_it_rejects_a_malformed_pairing(spec):
    with pytest.raises(ProfileError):
        profile_mark_sick_pairing(without_pairings(), spec)
