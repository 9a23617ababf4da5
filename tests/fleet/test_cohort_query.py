"""The cohort filter language: parsing, compiling to Q, running on PostgreSQL, errors and abuse."""

import pickle

import pytest
from django.db import connection
from django.db.models import Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.fleet.cohort_query import (
    MAX_FILTER_LENGTH,
    And,
    Comparison,
    Field,
    FilterError,
    Has,
    InList,
    Not,
    Or,
    Tag,
    compile_filter,
    parse_filter,
)
from apps.fleet.models import Device

SQL_INJECTION = "'; DROP TABLE fleet_device; --"


def _field(node):
    return node.field.kind, node.field.name


def _error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    return info.value


def _compile_or_error(text: str) -> Q | None:
    """compile_filter's result, or None after checking that the only error was a FilterError with a sane position."""
    try:
        return compile_filter(text)
    except FilterError as error:
        caught = error
    assert 0 <= caught.position <= len(text)
    return None


def _limit_hit(text: str) -> bool:
    message = _error(text).message
    return message.startswith(("nesting deeper", "too many conditions", "filter longer"))


# --- Parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">=", "~"])
def test_it_parses_each_operator(op):
    node = parse_filter(f'region {op} "eu"')
    assert node == Comparison(0, Field("region", "attr", "region", 0), op, "eu")


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ('id == "d1"', "column", "uid"),
        ('hw == "rpi4"', "column", "hw_model"),
        ('hw_model == "rpi4"', "column", "hw_model"),
        ('version.os == "39.2"', "version", "os"),
        ("attr.ram_gb == 4", "attr", "ram_gb"),
        ('region == "eu"', "attr", "region"),
        ('_private-key == "x"', "attr", "_private-key"),
    ],
)
def test_it_maps_each_field_kind(text, kind, name):
    assert _field(parse_filter(text)) == (kind, name)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('x == "plain"', "plain"),
        ("x == 'single'", "single"),
        (r'x == "a \"quoted\" word"', 'a "quoted" word'),
        (r"x == 'it\'s'", "it's"),
        (r'x == "back\\slash"', "back\\slash"),
        ('x == ""', ""),
        ('x == "ünïcødé ✓"', "ünïcødé ✓"),
        ("x == 42", 42),
        ("x == -7", -7),
        ("x == 3.25", 3.25),
        ("x == -0.5", -0.5),
        ("x == true", True),
        ("x == false", False),
        ("x==1", 1),
        ("  x\t==\n1  ", 1),
    ],
)
def test_it_parses_literals(text, value):
    node = parse_filter(text)
    assert node.value == value
    assert type(node.value) is type(value)


def test_it_gives_and_precedence_over_or():
    node = parse_filter("a == 1 or b == 2 and c == 3")
    assert isinstance(node, Or)
    first, second = node.operands
    assert _field(first) == ("attr", "a")
    assert isinstance(second, And)
    assert [_field(operand) for operand in second.operands] == [("attr", "b"), ("attr", "c")]


def test_it_lets_parentheses_override_precedence():
    node = parse_filter("(a == 1 or b == 2) and c == 3")
    assert isinstance(node, And)
    assert isinstance(node.operands[0], Or)
    assert _field(node.operands[1]) == ("attr", "c")


def test_it_flattens_chains_of_the_same_operator():
    node = parse_filter("tag:a or tag:b or tag:c")
    assert node == Or(0, (Tag(0, "a"), Tag(9, "b"), Tag(18, "c")))


def test_it_binds_not_tighter_than_and():
    node = parse_filter("not tag:a and tag:b")
    assert node == And(0, (Not(0, Tag(4, "a")), Tag(14, "b")))


def test_it_parses_not_not_and_not_in():
    assert parse_filter("not not tag:a") == Not(0, Not(4, Tag(8, "a")))
    node = parse_filter('region not in ("a", "b",)')
    assert node == InList(0, Field("region", "attr", "region", 0), ("a", "b"), True)


def test_it_parses_tag_and_has():
    assert parse_filter("tag:canary") == Tag(0, "canary")
    assert parse_filter("tag: canary") == Tag(0, "canary")
    assert parse_filter("has:version.agent") == Has(0, Field("version.agent", "version", "agent", 4))
    assert parse_filter("has:region") == Has(0, Field("region", "attr", "region", 4))


def test_it_allows_keywords_after_a_dot_and_names_that_start_with_keywords():
    assert _field(parse_filter('attr.in == "x"')) == ("attr", "in")
    assert _field(parse_filter('android == "x"')) == ("attr", "android")
    assert _field(parse_filter("notes == 1")) == ("attr", "notes")


# --- Compiling -------------------------------------------------------------------------------------


def test_it_compiles_the_documented_example():
    q = compile_filter('hw == "rpi4" and region in ("eu-west","eu-north") and tag:canary')
    assert q == (
        Q(hw_model="rpi4")
        & Q(attributes__has_key="region")
        & Q(attributes__region__in=["eu-west", "eu-north"])
        & Q(tags__has_key="canary")
    )


def test_it_compiles_version_and_attribute_keys_to_json_lookups():
    assert compile_filter('version.os == "39.2"') == Q(installed__has_key="os") & Q(installed__os="39.2")
    assert compile_filter('region != "eu"') == Q(attributes__has_key="region") & ~Q(attributes__region="eu")
    assert compile_filter("has:version.os") == Q(installed__has_key="os")
    assert compile_filter('id ~ "rpi"') == Q(uid__icontains="rpi")
    assert compile_filter('hw >= "n"') == Q(hw_model__gte="n")


def test_it_spells_out_exact_when_a_key_is_named_like_a_lookup():
    # "attributes__contains" alone would be JSONField's containment lookup, not the key.
    q = compile_filter('attr.contains == "x"')
    assert q == Q(attributes__has_key="contains") & Q(attributes__contains__exact="x")


def test_it_reports_filter_errors_as_value_errors_that_survive_pickling():
    error = _error("region ==")
    assert isinstance(error, ValueError)
    assert (error.message, error.position) == ("expected a value after '=='", 9)
    assert str(error) == "expected a value after '==' (at position 9)"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.position, str(copy)) == (error.message, error.position, str(error))


# --- Running against PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def devices(db):
    Device.objects.create(
        uid="rpi-eu-1",
        hw_model="rpi4",
        attributes={"region": "eu-west", "ram_gb": 4, "battery": 80, "beta": True, "site": "Berlin-Lab"},
        tags={"canary": True},
        installed={"os": "39.2", "agent": "1.4.0"},
    )
    Device.objects.create(
        uid="rpi-eu-2",
        hw_model="rpi4",
        attributes={"region": "eu-north", "ram_gb": 8, "beta": False, "site": "oslo"},
        tags={},
        installed={"os": "39.1"},
    )
    Device.objects.create(
        uid="nuc-us-1",
        hw_model="nuc11",
        # A number reported as a string, and a boolean where others report a number.
        attributes={"region": "us-east", "ram_gb": "2", "battery": True},
        tags={"lab": True, "canary": False},
        installed={"os": "40.0", "agent": "1.5.0"},
    )
    Device.objects.create(uid="bare-1", hw_model="", attributes={}, tags={}, installed={})
    Device.objects.create(
        uid="odd-1",
        hw_model="rpi3",
        attributes={"region": None, "in": "x", "contains": "y", "ram_gb": 2.5},
        tags={"lab": True},
        installed={"os": "39.10"},
    )


def matching(text: str) -> set[str]:
    return set(Device.objects.filter(compile_filter(text)).values_list("uid", flat=True))


ALL = {"rpi-eu-1", "rpi-eu-2", "nuc-us-1", "bare-1", "odd-1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Columns.
        ('id == "rpi-eu-1"', {"rpi-eu-1"}),
        ('id != "rpi-eu-1"', ALL - {"rpi-eu-1"}),
        ('id ~ "EU"', {"rpi-eu-1", "rpi-eu-2"}),
        ('hw == "rpi4"', {"rpi-eu-1", "rpi-eu-2"}),
        ('hw_model in ("nuc11", "rpi3")', {"nuc-us-1", "odd-1"}),
        ('hw not in ("rpi4",)', {"nuc-us-1", "bare-1", "odd-1"}),
        ('hw < "r"', {"nuc-us-1", "bare-1"}),
        ('hw >= "rpi4"', {"rpi-eu-1", "rpi-eu-2"}),
        ('hw == ""', {"bare-1"}),
        # Tags: a key, whatever its value.
        ("tag:canary", {"rpi-eu-1", "nuc-us-1"}),
        ("tag:lab and not tag:canary", {"odd-1"}),
        ("tag:nothing", set()),
        # Versions (text).
        ('version.os == "39.2"', {"rpi-eu-1"}),
        ('version.os ~ "39."', {"rpi-eu-1", "rpi-eu-2", "odd-1"}),
        ('version.os < "39.2"', {"rpi-eu-2", "odd-1"}),  # text order: "39.10" < "39.2"
        ('version.agent in ("1.4.0", "1.5.0")', {"rpi-eu-1", "nuc-us-1"}),
        ("has:version.agent", {"rpi-eu-1", "nuc-us-1"}),
        ("not has:version.os", {"bare-1"}),
        # Attributes, bare or with attr.
        ('region == "eu-west"', {"rpi-eu-1"}),
        ('attr.region == "eu-west"', {"rpi-eu-1"}),
        ('region in ("eu-west", "eu-north")', {"rpi-eu-1", "rpi-eu-2"}),
        ('region ~ "EU-"', {"rpi-eu-1", "rpi-eu-2"}),
        ('site ~ "lab"', {"rpi-eu-1"}),
        ('region > "f"', {"nuc-us-1"}),
        ("has:region", {"rpi-eu-1", "rpi-eu-2", "nuc-us-1", "odd-1"}),
        ("beta == true", {"rpi-eu-1"}),
        ("beta == false", {"rpi-eu-2"}),
        ("beta in (true, false)", {"rpi-eu-1", "rpi-eu-2"}),
        ('attr.in == "x"', {"odd-1"}),
        ('attr.contains == "y"', {"odd-1"}),
        # Typed values: 4 and "4" differ, ordering only matches values of the literal's type.
        ("ram_gb == 4", {"rpi-eu-1"}),
        ('ram_gb == "2"', {"nuc-us-1"}),
        ("ram_gb == 4.0", {"rpi-eu-1"}),
        ("ram_gb < 4", {"odd-1"}),
        ("ram_gb <= 4", {"rpi-eu-1", "odd-1"}),
        ("ram_gb > 2", {"rpi-eu-1", "rpi-eu-2", "odd-1"}),
        ("ram_gb >= -1", {"rpi-eu-1", "rpi-eu-2", "odd-1"}),
        ('ram_gb >= "1"', {"nuc-us-1"}),
        ("battery > 10", {"rpi-eu-1"}),
        ('ram_gb ~ "2"', {"nuc-us-1"}),
        # != and not in: the key must be there; `not` is the exact complement.
        ('region != "eu-west"', {"rpi-eu-2", "nuc-us-1", "odd-1"}),
        ('not region == "eu-west"', ALL - {"rpi-eu-1"}),
        ('region not in ("eu-west", "eu-north")', {"nuc-us-1", "odd-1"}),
        ('not region in ("eu-west", "eu-north")', {"nuc-us-1", "bare-1", "odd-1"}),
        ("not ram_gb < 4", ALL - {"odd-1"}),
        ('not region ~ "eu"', ALL - {"rpi-eu-1", "rpi-eu-2"}),
        ("ram_gb != 4", {"rpi-eu-2", "nuc-us-1", "odd-1"}),
        ('not has:region or region != "eu-west"', ALL - {"rpi-eu-1"}),
        # Precedence and grouping.
        ('tag:lab or hw == "rpi4" and region == "eu-north"', {"nuc-us-1", "odd-1", "rpi-eu-2"}),
        ('(tag:lab or hw == "rpi4") and region == "eu-north"', {"rpi-eu-2"}),
        ('not (tag:lab or hw == "rpi4")', {"bare-1"}),
        ("not not tag:lab", {"nuc-us-1", "odd-1"}),
        ('hw == "rpi4" and region in ("eu-west","eu-north") and tag:canary', {"rpi-eu-1"}),
    ],
)
def test_it_selects_the_right_devices(devices, text, expected):
    assert matching(text) == expected


# --- Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "empty filter", 0),
        ("   ", "empty filter", 0),
        ("region ==", "expected a value after '=='", 9),
        ("region == and tag:a", "expected a value after '==', found 'and'", 10),
        ('hw = "rpi4"', "unknown operator '=' (did you mean '=='?)", 3),
        ('hw => "a"', "unknown operator '=>' (did you mean '>='?)", 3),
        ('hw <> "a"', "unknown operator '<>' (did you mean '!='?)", 3),
        ("tag:a && tag:b", "unknown operator '&&' (use 'and')", 6),
        ('region == "eu-west', "unterminated string", 10),
        ("region == 'it\\'", "unterminated string", 10),
        ("tag:a and (tag:b or tag:c))", "unexpected ')'", 26),
        (")", "unexpected ')'", 0),
        ('tag:a and (hw == "x" or tag:b', "expected ')' to close '(' opened at position 10", 29),
        ('region in ("a", "b"', "expected ')' to close '(' opened at position 10", 19),
        ("attr.region__startswith == 'e'", "field names may not contain '__'", 11),
        ("attributes__x == 1", "field names may not contain '__'", 10),
        ("tag:can__ary", "tag names may not contain '__'", 7),
        ("has:attr.x__isnull", "field names may not contain '__'", 10),
        ("region_ == 'x'", "field names may not end with '_'", 6),
        ("hw == 4", "hw is text, compare it with a string", 6),
        ("version.os in ('39', 40)", "version.os is text, compare it with a string", 21),
        ("id == true", "id is text, compare it with a string", 6),
        ("ram ~ 4", "'~' matches text: give it a string", 6),
        ("beta < true", "'<' compares numbers or strings, not true or false", 7),
        ("region == eu", "expected a value after '==', found 'eu' (put text in quotes)", 10),
        ("beta == True", "expected a value after '==', found 'True' (true and false are lower-case)", 8),
        (
            "tag:a AND tag:b",
            "expected 'and', 'or' or the end of the filter, found 'AND' (keywords are lower-case: write 'and')",
            6,
        ),
        ("tag:a tag:b", "expected 'and', 'or' or the end of the filter, found 'tag:'", 6),
        ("region", "expected an operator after 'region', found the end of the filter", 6),
        ("tag:a and", "expected a condition after 'and'", 9),
        ("not", "expected a condition after 'not'", 3),
        ("()", "unexpected ')'", 1),
        ("and tag:a", "expected a condition, found 'and'", 0),
        ('"eu" == region', "expected a field, tag: or has:, found the value '\"eu\"' (put the field first)", 0),
        ("region in ()", "empty list: 'in' needs at least one value", 11),
        ("region in 'eu'", "expected '(' after 'in', found \"'eu'\"", 10),
        ("region in ('a' 'b')", "expected ',' or ')' in the list, found \"'b'\"", 15),
        ("region in ('a',,)", "expected a value after ',', found ','", 15),
        (
            "region not 'a'",
            "expected 'in' after 'not', found \"'a'\" (to negate a condition, put 'not' before the field)",
            11,
        ),
        ("ver == 1.2.3", "'1.2.3' is not a number (put text in quotes)", 7),
        ("x == 1.", "'1.' is not a number (put text in quotes)", 5),
        ("x == - 1", "expected a digit after '-'", 6),
        ("x == 99999999999999999999", "number '99999999999999999999' is out of range", 5),
        (r"x == 'a\nb'", "unknown escape '\\n' (only \\\" \\' and \\\\ are allowed)", 7),
        ("x == 'a\x00b'", "strings may not contain control characters ('\\x00')", 7),
        ("region @ 'x'", "unexpected character '@'", 7),
        ("foo:bar", "unknown prefix 'foo:' (use tag:NAME or has:FIELD)", 0),
        ("tag:a.b", "tag names may not contain '.'", 5),
        ("tag:'x'", "expected a tag name after 'tag:', found \"'x'\"", 4),
        ("has:hw", "has: works with attributes and versions; every device has 'hw'", 4),
        ("os.version == '1'", "unknown field prefix 'os.' (use attr.NAME or version.COMPONENT)", 0),
        ("attr.a.b == 1", "a field has at most one '.' (attr.NAME or version.COMPONENT)", 6),
        ("version. == '1'", "expected a name after '.'", 8),
        ("attr.9 == 1", "field names start with a letter or '_'", 5),
        ("version == '39'", "'version' needs a name after it, e.g. version.os", 0),
        ("tag == 'x'", "did you mean 'tag:'? (write attr.tag for an attribute named tag)", 0),
        ("x" * 65 + " == 1", "field names are at most 64 characters", 0),
    ],
)
def test_it_rejects_invalid_filters_with_positions(text, message, position):
    error = _error(text)
    assert (error.message, error.position) == (message, position)
    assert str(error) == f"{message} (at position {position})"


def test_it_limits_the_length():
    text = "tag:a or " + "x" * MAX_FILTER_LENGTH
    error = _error(text)
    assert (error.message, error.position) == ("filter longer than 2000 characters", 2000)
    # Exactly at the limit is still parsed (and fails for an ordinary reason).
    assert _error("x" * MAX_FILTER_LENGTH).message != "filter longer than 2000 characters"


def test_it_limits_the_number_of_conditions():
    fifty = " or ".join(f"tag:t{i}" for i in range(50))
    assert len(parse_filter(fifty).operands) == 50
    error = _error(fifty + " or ram > 1")
    assert (error.message, error.position) == ("too many conditions (at most 50)", len(fifty) + 4)


def test_it_limits_nesting_of_parentheses_and_nots():
    assert isinstance(parse_filter("(" * 20 + "tag:a" + ")" * 20), Tag)
    error = _error("(" * 21 + "tag:a" + ")" * 21)
    assert (error.message, error.position) == ("nesting deeper than 20 levels", 20)
    error = _error("not " * 21 + "tag:a")
    assert (error.message, error.position) == ("nesting deeper than 20 levels", 80)
    error = _error("(not " * 11 + "tag:a" + ")" * 11)
    assert (error.message, error.position) == ("nesting deeper than 20 levels", 50)


def test_it_limits_in_lists():
    values = ", ".join(str(i) for i in range(100))
    assert len(parse_filter(f"n in ({values})").values) == 100
    error = _error(f"n in ({values}, 100)")
    assert (error.message, error.position) == ("more than 100 values in the list", len(f"n in ({values}, "))


def test_it_limits_strings():
    assert parse_filter(f'x == "{"a" * 200}"').value == "a" * 200
    error = _error(f'tag:a or x == "{"a" * 201}"')
    assert (error.message, error.position) == ("string longer than 200 characters", 14)
    # Escapes count as the one character they stand for.
    assert parse_filter('x == "' + '\\"' * 200 + '"').value == '"' * 200


# --- Abuse -------------------------------------------------------------------------------------------


def _table_is_intact() -> None:
    assert Device._meta.db_table in connection.introspection.table_names()
    assert Device.objects.count() == len(ALL)


@pytest.mark.parametrize(
    "text",
    [
        f'region == "{SQL_INJECTION}"',
        "hw == '\\'; DROP TABLE fleet_device; --'",
        f'id in ("x", "{SQL_INJECTION}")',
        f'version.os ~ "{SQL_INJECTION}"',
        """region == "eu-west' OR '1'='1" """,
        r'hw == "rpi4\" or hw != \"x"',
        'region ~ "%"',
        'region ~ "_"',
        'region ~ "\\\\"',
        'region == "\') OR 1=1; --"',
        "_connector == 'OR'",
        "_negated == true",
        'attr.region ~ "eu%\' OR 1=1 --"',
        "has:attr.x",
        "tag:pg_sleep",
    ],
)
def test_it_treats_sql_in_values_as_plain_text(devices, text):
    assert matching(text) == set()
    _table_is_intact()


@pytest.mark.parametrize(
    "text",
    [
        "attr.region__startswith == 'e'",
        "region__startswith == 'e'",
        "attributes__region == 'eu-west'",
        "tags__has_key == 'canary'",
        "hw_model__regex == '.*'",
        "id__in == 'x'",
        "has:attributes__region",
        "tag:x__y",
        "version.os__gt == '1'",
        "attr.region.__class__ == 'x'",
        "uid; DROP TABLE fleet_device == 'x'",
        f"hw == '{SQL_INJECTION}'",
        "region == 'x'; DROP TABLE fleet_device; --",
        "region == 'x' -- and tag:a",
        "region == 'x' /* and */",
        "pk == 1 or 1 == 1",
        "ram > 1e9999",
        "x" * 5000,
        "(" * 1000 + "tag:a" + ")" * 1000,
        "not " * 500 + "tag:a",
        "tag:a or " * 300 + "tag:a",
        "x in (" + "1," * 1000 + "1)",
        "region == '" + "a" * 1900 + "'",
    ],
)
def test_it_rejects_lookup_injection_and_oversized_input(devices, text):
    with pytest.raises(FilterError):
        compile_filter(text)
    _table_is_intact()


def test_it_matches_sql_looking_values_literally(devices):
    Device.objects.create(uid="sneaky", attributes={"region": SQL_INJECTION, "note": "100% eu_west"})
    assert matching(f'region == "{SQL_INJECTION}"') == {"sneaky"}
    assert matching('note ~ "0% EU_"') == {"sneaky"}
    assert matching('note ~ "%"') == {"sneaky"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fleet_device")
        assert cursor.fetchone()[0] == len(ALL) + 1


# --- Properties --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_it_raises_only_filter_errors_on_random_text(text):
    _compile_or_error(text)


TOKENS = [
    "(", ")", ",", "and", "or", "not", "in", "true", "false", "True", "AND",
    "==", "!=", "<", "<=", ">", ">=", "~", "=", "!", "<>", "&&", "|",
    "tag:", "has:", "tag", "has", "foo:", ":",
    "hw", "id", "hw_model", "region", "ram_gb", "version", "version.os", "version.", "attr.in", "attr.contains",
    "attr.", "a.b.c", "x__y", "region_", "_", "-", ".", "x-y",
    '"eu-west"', "'x'", '""', '"a\\"b"', "'\\'", '"\\n"', '"', "'", "\\", '"%"', f'"{SQL_INJECTION}"',
    "0", "4", "-1.5", "1.", "1.2.3", "99999999999999999999", "12ab",
    "\x00", "é", "\u200b",
]  # fmt: skip


@st.composite
def token_soup(draw) -> str:
    tokens = draw(st.lists(st.sampled_from(TOKENS), max_size=25))
    separators = draw(st.lists(st.sampled_from(["", " ", " ", "\t", "\n"]), min_size=len(tokens), max_size=len(tokens)))
    return "".join(token + separator for token, separator in zip(tokens, separators, strict=True))


TEXT_FIELDS = ["id", "hw", "hw_model", "version.os", "version.agent"]
JSON_FIELDS = ["region", "attr.region", "ram_gb", "beta", "battery", "attr.in", "attr.contains", "_x-y"]
ORDERING = ["<", "<=", ">", ">="]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


strings = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12).map(_quote) | st.sampled_from(
    ['"eu-west"', '"rpi4"', '"39.2"', '"2"', f'"{SQL_INJECTION}"', '"%"']
)
numbers = st.integers(-(10**6), 10**6).map(str) | st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}")
literals = strings | numbers | st.sampled_from(["true", "false"])


@st.composite
def comparison(draw) -> str:
    field = draw(st.sampled_from(TEXT_FIELDS + JSON_FIELDS))
    text_only = field in TEXT_FIELDS
    form = draw(st.sampled_from(["op", "in", "not in"]))
    if form != "op":
        values = draw(st.lists(strings if text_only else literals, min_size=1, max_size=4))
        return f"{field} {form} ({', '.join(values)})"
    op = draw(st.sampled_from(["==", "!=", "~", *ORDERING]))
    if op == "~" or text_only:
        value = draw(strings)
    elif op in ORDERING:
        value = draw(strings | numbers)
    else:
        value = draw(literals)
    return f"{field} {op} {value}"


leaves = (
    comparison()
    | st.sampled_from(["canary", "lab", "nothing"]).map(lambda name: f"tag:{name}")
    | st.sampled_from(["region", "version.agent", "attr.in"]).map(lambda name: f"has:{name}")
)
grammatical = st.recursive(
    leaves,
    lambda children: (
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(" ".join)
        | children.map(lambda child: f"not {child}")
        | children.map(lambda child: f"({child})")
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw) -> str:
    """A grammatical filter with one token inserted or one slice cut out: errors near valid text."""
    text = draw(grammatical)
    start = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:start] + draw(st.sampled_from(TOKENS)) + text[start:]
    end = draw(st.integers(start, len(text)))
    return text[:start] + text[end:]


@pytest.mark.django_db
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token_soup() | mutated())
def test_it_raises_only_filter_errors_on_grammar_shaped_text_and_what_compiles_runs(text):
    q = _compile_or_error(text)
    if q is not None:
        # Whatever compiles must also run: no database error may surface later.
        Device.objects.filter(q).count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grammatical)
def test_it_compiles_every_grammatical_filter_and_not_is_its_exact_complement(devices, text):
    complement = f"not ({text})"
    q = _compile_or_error(complement)
    if q is None:
        # Only a limit may stop a filter the grammar allows (the extra `not (...)` adds 2 levels).
        assert _limit_hit(complement)
        return
    selected = matching(text)
    rest = set(Device.objects.filter(q).values_list("uid", flat=True))
    assert selected | rest == ALL
    assert not selected & rest
