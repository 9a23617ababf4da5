"""Simulator profiles: what the simulated fleet looks like and how its releases behave.

A profile is a plain JSON-able dict. The built-in `DEFAULT_PROFILE` matches the demo catalogue
that `demo_setup --seed` creates (os, agent, vision). A profile file given with `--profile`
is deep-merged over the default, so it only needs the keys it changes.

Keys:
- `versions`: {component: {version: weight}}: the initial version mix of new devices.
- `hardware`, `regions`, `customers`: {name: weight}; `sites_per_region`: sites named
  "<region>-site-<n>"; `canary_share`: share of devices tagged "canary".
- `reboot_components`: components whose install reboots the device (reported as one reboot).
- `baseline`: {"crash_per_hour", "failed_checks_per_hour"}: every device's rates.
- `install`: defaults for every release: `install_fail` (probability), `retryable_fail_share`
  (share of failures with a retryable error code), `fallback` (probability that an installed
  release comes back on the old version: A/B fallback), `install_s` and `download_s`
  ([low, high] seconds), `reboot_s` ([low, high] seconds offline after a rebooting install).
- `releases`: {"component=version": {...}}: per-release overrides of the `install` keys, plus
  `crash_per_hour` / `failed_checks_per_hour` (added to the rate while the release is
  installed) and `crash_factor` / `failed_checks_factor` (multiply the device's whole rate).
- `combinations`: [{"match": {component: version, ...}, "crash_per_hour": x,
  "failed_checks_per_hour": y}]: added when every matched version is installed together
  (e.g. vision 1.4 crashes only on os 39.2).
- `error_codes`: {"retryable": [...], "permanent": [...]}: codes a failed install reports.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

DEFAULT_PROFILE: dict[str, Any] = {
    "versions": {
        # The newest release of each component is on no device yet: it is what demos roll out.
        "os": {"38.4": 10, "39.1": 55, "39.2": 35, "40.0": 0},
        "agent": {"2.3.0": 15, "2.4.1": 85, "2.5.0": 0},
        "vision": {"1.2": 20, "1.3": 80, "1.4": 0},
    },
    "hardware": {"rpi4": 50, "rpi5": 30, "imx8": 20},
    "regions": {"eu-west": 35, "eu-north": 15, "us-east": 35, "ap-south": 15},
    "sites_per_region": 4,
    "customers": {"acme": 40, "globex": 25, "initech": 20, "umbrella": 15},
    "canary_share": 0.05,
    "reboot_components": ["os"],
    "baseline": {"crash_per_hour": 0.2, "failed_checks_per_hour": 0.3},
    "install": {
        "install_fail": 0.01,
        "retryable_fail_share": 0.5,
        "fallback": 0.0,
        "download_s": [2, 10],
        "install_s": [5, 30],
        "reboot_s": [10, 30],
    },
    "releases": {
        "os=40.0": {"install_fail": 0.02, "retryable_fail_share": 0.5, "fallback": 0.01, "install_s": [20, 60]},
        "vision=1.4": {"install_s": [3, 10]},
    },
    "combinations": [
        {"match": {"os": "39.2", "vision": "1.4"}, "crash_per_hour": 3.0},
    ],
    "error_codes": {
        "retryable": ["download_interrupted", "disk_busy"],
        "permanent": ["signature_invalid", "not_enough_space"],
    },
}

# What `--bad RELEASE` does to a release: it crashes ten times as often and often fails to install.
BAD_RELEASE = {"crash_factor": 10.0, "failed_checks_factor": 10.0, "install_fail": 0.3}

RELEASE_SPEC_RE = re.compile(r"^([a-z][a-z0-9-]{0,47})=([A-Za-z0-9][A-Za-z0-9._:+~-]{0,63})$")


class ProfileError(ValueError):
    """A profile (file or --bad spec) is malformed; the message says where."""


def profile_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` over `base` (dicts merge, everything else replaces); inputs are not changed."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = profile_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def release_spec_parse(spec: str) -> tuple[str, str]:
    match = RELEASE_SPEC_RE.match(spec.strip())
    if not match:
        raise ProfileError(f"release spec {spec!r}: expected COMPONENT=VERSION, e.g. os=40.0")
    return match.group(1), match.group(2)


def profile_mark_bad(profile: dict[str, Any], spec: str) -> dict[str, Any]:
    """A copy of the profile in which the release `spec` ("os=40.0") is bad."""
    component, version = release_spec_parse(spec)
    return profile_merge(profile, {"releases": {f"{component}={version}": dict(BAD_RELEASE)}})


# What `--sick-pairing` adds by default: crashes per hour while both releases run together.
SICK_PAIRING_CRASH_PER_HOUR = 3.0


def profile_mark_sick_pairing(
    profile: dict[str, Any], spec: str, *, crash_per_hour: float = SICK_PAIRING_CRASH_PER_HOUR
) -> dict[str, Any]:
    """A copy of the profile in which release A crashes only on release B: spec "vision=1.4@os=39.2".

    Each side alone stays healthy; only devices running both together crash more (a pairing bug).
    """
    first, sep, second = spec.partition("@")
    if not sep:
        raise ProfileError(f"pairing spec {spec!r}: expected COMPONENT=VERSION@COMPONENT=VERSION, e.g. vision=1.4@os=39.2")
    (c1, v1), (c2, v2) = release_spec_parse(first), release_spec_parse(second)
    if c1 == c2:
        raise ProfileError(f"pairing spec {spec!r}: the two releases must be of different components")
    merged = copy.deepcopy(profile)
    merged["combinations"] = [
        *merged.get("combinations", []),
        {"match": {c1: v1, c2: v2}, "crash_per_hour": float(crash_per_hour)},
    ]
    return merged


def profile_load(path: str | Path) -> dict[str, Any]:
    """Read a JSON profile file and merge it over the default."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"profile {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path}: must be a JSON object")
    return profile_check(profile_merge(DEFAULT_PROFILE, data))


def _check_weights(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not value:
        raise ProfileError(f"{where}: must be a non-empty object of name → weight")
    for name, weight in value.items():
        if not isinstance(weight, int | float) or weight < 0:
            raise ProfileError(f"{where}.{name}: weight must be a number >= 0")
    if not sum(value.values()) > 0:
        raise ProfileError(f"{where}: at least one weight must be > 0")


def _check_range(value: Any, where: str) -> None:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and v >= 0 for v in value)
        or value[0] > value[1]
    ):
        raise ProfileError(f"{where}: must be [low, high] seconds with 0 <= low <= high")


def _check_probability(settings: dict[str, Any], where: str) -> None:
    for key in ("install_fail", "retryable_fail_share", "fallback"):
        if key in settings and not (isinstance(settings[key], int | float) and 0 <= settings[key] <= 1):
            raise ProfileError(f"{where}.{key}: must be a probability between 0 and 1")
    for key in ("download_s", "install_s", "reboot_s"):
        if key in settings:
            _check_range(settings[key], f"{where}.{key}")
    for key in ("crash_per_hour", "failed_checks_per_hour", "crash_factor", "failed_checks_factor"):
        if key in settings and not (isinstance(settings[key], int | float) and settings[key] >= 0):
            raise ProfileError(f"{where}.{key}: must be a number >= 0")


def profile_check(profile: dict[str, Any]) -> dict[str, Any]:
    """Validate a (merged) profile; returns it unchanged or raises ProfileError."""
    versions = profile.get("versions")
    if not isinstance(versions, dict) or not versions:
        raise ProfileError("versions: must be an object of component → {version: weight}")
    for component, weights in versions.items():
        _check_weights(weights, f"versions.{component}")
    for key in ("hardware", "regions", "customers"):
        _check_weights(profile.get(key), key)
    if not isinstance(profile.get("sites_per_region"), int) or profile["sites_per_region"] < 1:
        raise ProfileError("sites_per_region: must be an integer >= 1")
    share = profile.get("canary_share")
    if not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ProfileError("canary_share: must be between 0 and 1")
    _check_probability(profile.get("install", {}), "install")
    baseline = profile.get("baseline", {})
    _check_probability(baseline, "baseline")
    for spec, settings in profile.get("releases", {}).items():
        release_spec_parse(spec)
        if not isinstance(settings, dict):
            raise ProfileError(f"releases.{spec}: must be an object")
        _check_probability(settings, f"releases.{spec}")
    for index, combination in enumerate(profile.get("combinations", [])):
        if not isinstance(combination, dict) or not isinstance(combination.get("match"), dict):
            raise ProfileError(f"combinations[{index}]: needs a 'match' object of component → version")
        _check_probability(combination, f"combinations[{index}]")
    codes = profile.get("error_codes", {})
    for key in ("retryable", "permanent"):
        if not isinstance(codes.get(key), list) or not codes[key]:
            raise ProfileError(f"error_codes.{key}: must be a non-empty list of codes")
    return profile
