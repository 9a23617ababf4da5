"""Fuzzing the cohort filter language: any text either compiles to a query that PostgreSQL runs,
or raises FilterError; SQL-looking values are data, never SQL."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.fleet.cohort_query import FilterError, compile_filter
from apps.fleet.models import Device
from tests.factories import DeviceFactory

from .helpers import FUZZ_SETTINGS

pytestmark = pytest.mark.django_db

names = st.sampled_from(["hw", "id", "region", "attr.region", "version.os", "battery_pct", "attr.tag", "tag",
                         "has", "a__b", "x_", "version", "ünï", "1abc", "select"])
literals = st.one_of(
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "'x'", '"', "'", "--", "1e999", "-", "()"]),
)
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "~", "=", "===", "in", "not in", "like"])


@st.composite
def grammar_shaped(draw, depth=0):
    kind = draw(st.sampled_from(["cmp", "in", "tag", "has", "not", "and", "or", "paren", "junk"]
                                if depth < 4 else ["cmp", "tag", "has"]))
    if kind == "cmp":
        return f"{draw(names)} {draw(ops)} {draw(literals)}"
    if kind == "in":
        items = ", ".join(draw(st.lists(literals, max_size=4)))
        return f"{draw(names)} {draw(st.sampled_from(['in', 'not in']))} ({items})"
    if kind == "tag":
        return f"tag:{draw(st.text(max_size=8))}"
    if kind == "has":
        return f"has:{draw(names)}"
    if kind == "not":
        return f"not {draw(grammar_shaped(depth + 1))}"
    if kind in ("and", "or"):
        return f"{draw(grammar_shaped(depth + 1))} {kind} {draw(grammar_shaped(depth + 1))}"
    if kind == "paren":
        return f"({draw(grammar_shaped(depth + 1))})"
    return draw(st.text(max_size=20))


@pytest.fixture
def fleet():
    DeviceFactory(hw_model="rpi4", attributes={"region": "eu-west", "battery_pct": 50}, installed={"os": "39.1"})
    DeviceFactory(hw_model="nuc", attributes={"region": "us-east"}, tags={"canary": True})


def run(text: str) -> None:
    try:
        query = compile_filter(text)
    except FilterError:
        return
    # Evaluating is part of the contract: a filter that compiles must run on PostgreSQL.
    Device.objects.filter(query).count()


@settings(max_examples=150, suppress_health_check=list(HealthCheck), **FUZZ_SETTINGS)
@given(text=st.text(max_size=80))
def test_it_compiles_or_raises_filter_error_for_any_text(fleet, text):
    run(text)


@settings(max_examples=150, suppress_health_check=list(HealthCheck), **FUZZ_SETTINGS)
@given(text=grammar_shaped())
def test_it_compiles_or_raises_filter_error_for_grammar_shaped_text(fleet, text):
    run(text)


@pytest.mark.parametrize(
    "text",
    [
        "region == \"x' OR 1=1 --\"",
        "region == \"eu-west\\\"; DROP TABLE fleet_device; --\"",
        "hw ~ \"%\"",
        "hw ~ \"_\"",
        "region in (\"') OR ('1'='1\")",
        "id == \"*\"",
    ],
)
def test_it_treats_sql_looking_values_as_plain_data(fleet, text):
    assert Device.objects.filter(compile_filter(text)).count() == 0
    assert Device.objects.count() == 2  # nothing was dropped or changed


@pytest.mark.parametrize(
    "text",
    [
        "region__isnull == true",
        "attr.region == \"a\x00b\"",  # PostgreSQL text cannot hold NUL: refused up front, never a 500
        "attr.region__startswith == \"eu\"",
        "1=1; DROP TABLE fleet_device",
        "region == eu-west' OR '1'='1",
        "x" * 5000,
        "(" * 500 + "hw == \"a\"" + ")" * 500,
        "not " * 500 + "tag:a",
        " or ".join(["tag:a"] * 200),
    ],
)
def test_it_refuses_lookup_injection_and_oversized_filters_with_filter_error(fleet, text):
    with pytest.raises(FilterError):
        compile_filter(text)
