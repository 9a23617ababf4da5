"""Certified-combination patterns: per component an exact version, `39.*`-style wildcards, or `*`.

Pure functions (no database), shared by the selectors, the alert task and the tests.
"""

import re
from functools import lru_cache

# Versions are `[A-Za-z0-9][A-Za-z0-9._:-]*` (apps.fleet.models.NAME_RE); a pattern may add `*`.
PATTERN_RE = re.compile(r"^[A-Za-z0-9._:*-]{1,64}$")
COMPONENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,47}$")


def pattern_error(component: str, pattern: str) -> str | None:
    """Why a (component, pattern) pair is invalid, or None."""
    if not COMPONENT_RE.match(component or ""):
        return f"{component!r} is not a component name (lower-case letters, digits, '-')"
    if not PATTERN_RE.match(pattern or ""):
        return f"{component}: {pattern!r} is not a version pattern (letters, digits, . _ : - and * only)"
    return None


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def version_matches(pattern: str, version: str | None) -> bool:
    """`*` matches anything, including a component that is not installed; others need a version."""
    if pattern == "*":
        return True
    return version is not None and bool(_compiled(pattern).match(version))


def combination_matches(patterns: dict[str, str], versions: dict[str, str]) -> bool:
    """Components the patterns do not name may run any version (or none)."""
    return all(version_matches(pattern, versions.get(component)) for component, pattern in patterns.items())


def is_certified(certified: list[dict[str, str]], versions: dict[str, str]) -> bool:
    return any(combination_matches(patterns, versions) for patterns in certified)


def parse_patterns(text: str) -> tuple[dict[str, str], list[str]]:
    """`os=39.*, agent=1.4.2` (comma or newline separated) → ({"os": "39.*", ...}, errors)."""
    patterns: dict[str, str] = {}
    errors: list[str] = []
    for raw in re.split(r"[,\n]", text or ""):
        item = raw.strip()
        if not item:
            continue
        component, sep, pattern = (part.strip() for part in item.partition("="))
        if not sep:
            errors.append(f"{item!r}: write component=version")
            continue
        error = pattern_error(component, pattern)
        if error:
            errors.append(error)
        elif component in patterns:
            errors.append(f"{component} is named twice")
        else:
            patterns[component] = pattern
    if not patterns and not errors:
        errors.append("name at least one component, e.g. os=39.*")
    return patterns, errors


def describe(patterns: dict[str, str]) -> str:
    return ", ".join(f"{c}={p}" for c, p in sorted(patterns.items())) or "(any)"
