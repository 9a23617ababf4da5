"""The cohort filter language: a small, safe query language that selects devices.

A filter is parsed by a hand-written tokenizer and recursive-descent parser into an AST
(`parse_filter`) and compiled into a Django ``Q`` over ``Device`` (`compile_filter`). User
text never reaches SQL or a lookup name unvalidated: values are always query parameters, and
field names are checked against the grammar below before they become ORM lookups.

Examples::

    hw == "rpi4" and region in ("eu-west", "eu-north") and tag:canary
    version.os < "40" and not tag:lab
    has:version.agent and battery_pct >= 20
    (hw ~ "rpi" or hw == "nuc") and not region in ("cn-north")

Grammar (keywords ``and or not in true false`` are lower-case; whitespace between tokens is free)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" expr ")" | "tag:" NAME | "has:" FIELD | comparison
    comparison := FIELD op literal | FIELD ["not"] "in" "(" literal ("," literal)* [","] ")"
    op         := "==" | "!=" | "<" | "<=" | ">" | ">=" | "~"
    literal    := STRING | NUMBER | "true" | "false"
    STRING     := "..." or '...'; the only escapes are \\" \\' and \\\\
    NUMBER     := -?[0-9]+ ("." [0-9]+)?
    FIELD      := NAME ("." NAME)?
    NAME       := [A-Za-z_][A-Za-z0-9_-]{0,63}, without "__"

``and`` binds tighter than ``or``, so ``a or b and c`` means ``a or (b and c)``.

Fields:

- ``id``: the device id (``Device.uid``); ``hw`` or ``hw_model``: the hardware model. Both are
  text columns: compare them with strings only.
- ``version.COMPONENT``: the version of COMPONENT the device reports as installed (text, so
  strings only), e.g. ``version.os == "39.2"``.
- ``attr.NAME``, or just ``NAME``: the device attribute NAME, e.g. ``region == "eu-west"``.
  Attribute values are JSON: strings, numbers or true/false.
- ``tag:NAME``: the device has the tag NAME.
- ``has:FIELD``: the device reports the attribute or component at all (``has:region``,
  ``has:version.agent``).

Bare ``attr``, ``version``, ``tag`` and ``has`` are not fields (write ``attr.tag`` for an attribute
named "tag"). Attribute and component names may not end with ``_``, because Django would read
the ``_`` together with its own ``__`` separator.

Operators:

- ``==`` / ``!=``: equal / not equal. Values are typed: the number ``4`` and the string ``"4"``
  are different values.
- ``<`` ``<=`` ``>`` ``>=``: ordering. Numbers compare numerically, strings as the database
  orders text (so ``"10" < "9"``). An attribute only matches when its value has the literal's
  type: ``ram_gb < 4`` never matches a device that reports ``"ram_gb": "2"``.
- ``~``: case-insensitive "contains" on strings, e.g. ``hw ~ "rpi"``. Matches string values only;
  ``%`` and ``_`` are plain characters, not wildcards.
- ``in (...)`` / ``not in (...)``: one of / none of the listed values (at most 100).

Missing attributes and components: every comparison on an attribute or component is false for
a device that does not report it. In particular ``region != "eu"`` and ``region not in ("eu")``
mean "reports a region, and it is not eu". To also select devices without a region, write
``not region == "eu"`` (``not`` is the exact complement) or ``not has:region or region != "eu"``.

Limits: at most 2000 characters, 50 conditions (comparisons, ``tag:`` and ``has:``), 20 levels of
nesting (each ``(`` and each ``not`` is a level), 100 values in an ``in`` list and 200 characters
in a string. Numbers must lie within ±9223372036854775807.

Errors raise `FilterError` with the 0-based character position of the offending token (for a
name with ``__``, of the ``__``), e.g. ``expected a value after '==' (at position 9)``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import reduce
from operator import and_, or_
from typing import Any, ClassVar

from django.db import NotSupportedError
from django.db.models import BooleanField, F, Func, Q
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.json import KeyTransformFactory, compile_json_path

from .models import Device

__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_IN_VALUES",
    "MAX_NAME_LENGTH",
    "MAX_STRING_LENGTH",
    "And",
    "Comparison",
    "Field",
    "FilterError",
    "Has",
    "InList",
    "Node",
    "Not",
    "Or",
    "Tag",
    "compile_filter",
    "parse_filter",
]

MAX_FILTER_LENGTH = 2000
MAX_CONDITIONS = 50
MAX_DEPTH = 20
MAX_IN_VALUES = 100
MAX_STRING_LENGTH = 200
MAX_NAME_LENGTH = 64
# Values outside a signed 64-bit integer overflow SQLite's parameters and lose precision as JSON numbers.
MAX_NUMBER = 2**63 - 1

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "~")
ORDERING_LOOKUPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
# Column fields: filter name -> Device field.
COLUMN_FIELDS = {"id": "uid", "hw": "hw_model", "hw_model": "hw_model"}
# Field prefix -> Device JSON field whose keys it addresses.
JSON_PREFIXES = {"attr": "attributes", "version": "installed"}

Value = str | int | float | bool


class FilterError(ValueError):
    """A filter that does not parse or breaks a limit; `position` is the 0-based offset of the culprit."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction would call __init__ with the formatted string only.
        return (type(self), (self.message, self.position))


# --- AST -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A resolved field: a Device column, or one key of a Device JSON field."""

    text: str  # as written, e.g. "version.os"
    kind: str  # "column" (id, hw), "attr" or "version"
    name: str  # the Device column for "column", otherwise the JSON key
    position: int

    @property
    def is_text(self) -> bool:
        return self.kind in ("column", "version")

    @property
    def column(self) -> str:
        return self.name if self.kind == "column" else JSON_PREFIXES[self.kind]


@dataclass(frozen=True)
class Node:
    """An AST node; `position` is where it starts in the filter text."""

    position: int


@dataclass(frozen=True)
class Comparison(Node):
    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class InList(Node):
    field: Field
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class Tag(Node):
    name: str


@dataclass(frozen=True)
class Has(Node):
    field: Field


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class And(Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    operands: tuple[Node, ...]


# --- Tokenizer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # name, prefix, keyword, string, number, op, "(", ")", ",", end
    text: str  # the source text (for a prefix: "tag" or "has")
    position: int
    value: Value | None = None


_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
# A dotted word; its parts are validated by the parser, which knows what the word names.
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*")
# Everything that could belong to a number, so "1.2.3" and "12ab" fail as a whole.
_NUMBER_WORD_RE = re.compile(r"-?[A-Za-z0-9_.-]*")
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_OPERATOR_CHARS = frozenset("=!<>~&|")
_OPERATOR_HINTS = {
    "=": "did you mean '=='?",
    "===": "did you mean '=='?",
    "=<": "did you mean '<='?",
    "=>": "did you mean '>='?",
    "<>": "did you mean '!='?",
    "=!": "did you mean '!='?",
    "!": "use 'not' to negate a condition, or '!=' for not equal",
    "~=": "did you mean '~'?",
    "=~": "did you mean '~'?",
    "&": "use 'and'",
    "&&": "use 'and'",
    "|": "use 'or'",
    "||": "use 'or'",
}
_ESCAPABLE = frozenset("\"'\\")


def _show(text: str, limit: int = 30) -> str:
    """Quote source text for an error message, readable even when it holds control characters."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text.isprintable():
        return repr(text)
    # Quote with whichever quote the text does not use, so "'eu'" does not read as ''eu''.
    return f'"{text}"' if "'" in text and '"' not in text else f"'{text}'"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch in "\"'":
            token, i = _read_string(text, i)
            tokens.append(token)
        elif ch in _DIGITS or (ch == "-" and text[i + 1 : i + 2] in _DIGITS):
            tokens.append(_read_number(text, i))
            i += len(tokens[-1].text)
        elif ch in _NAME_START:
            word = _WORD_RE.match(text, i).group()  # type: ignore[union-attr]  # ch guarantees a match
            end = i + len(word)
            if text[end : end + 1] == ":":
                if word not in ("tag", "has"):
                    raise FilterError(f"unknown prefix {_show(word + ':')} (use tag:NAME or has:FIELD)", i)
                tokens.append(_Token("prefix", word, i))
                end += 1
            elif word in KEYWORDS:
                tokens.append(_Token("keyword", word, i))
            else:
                tokens.append(_Token("name", word, i))
            i = end
        elif ch in _OPERATOR_CHARS:
            end = i
            while end < n and text[end] in _OPERATOR_CHARS:
                end += 1
            op = text[i:end]
            if op not in OPERATORS:
                hint = _OPERATOR_HINTS.get(op)
                raise FilterError(f"unknown operator {_show(op)}" + (f" ({hint})" if hint else ""), i)
            tokens.append(_Token("op", op, i))
            i = end
        elif ch == "-":
            raise FilterError("expected a digit after '-'", i + 1)
        else:
            raise FilterError(f"unexpected character {_show(ch)}", i)
    tokens.append(_Token("end", "", n))
    return tokens


def _read_string(text: str, start: int) -> tuple[_Token, int]:
    quote = text[start]
    chars: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise FilterError("unterminated string", start)
        ch = text[i]
        if ch == quote:
            break
        if ch == "\\":
            if i + 1 >= n:
                raise FilterError("unterminated string", start)
            escaped = text[i + 1]
            if escaped not in _ESCAPABLE:
                raise FilterError(f"unknown escape {_show(chr(92) + escaped)} (only \\\" \\' and \\\\ are allowed)", i)
            chars.append(escaped)
            i += 2
            continue
        # NUL and lone surrogates cannot be stored in PostgreSQL text or jsonb: the query would
        # fail inside the database instead of here, with a position.
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise FilterError(f"strings may not contain control characters ({_show(ch)})", i)
        chars.append(ch)
        i += 1
    value = "".join(chars)
    if len(value) > MAX_STRING_LENGTH:
        raise FilterError(f"string longer than {MAX_STRING_LENGTH} characters", start)
    return _Token("string", text[start : i + 1], start, value), i + 1


def _read_number(text: str, start: int) -> _Token:
    word = _NUMBER_WORD_RE.match(text, start).group()  # type: ignore[union-attr]  # always matches
    if not _NUMBER_RE.fullmatch(word):
        raise FilterError(f"{_show(word)} is not a number (put text in quotes)", start)
    value: int | float = float(word) if "." in word else int(word)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise FilterError(f"number {_show(word)} is out of range", start)
    return _Token("number", word, start, value)


# --- Parser ----------------------------------------------------------------------------------------


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "prefix":
        return _show(token.text + ":")
    return _show(token.text)


def _keyword_hint(token: _Token) -> str:
    # "AND" and "True" are names to the tokenizer; say why instead of "expected an operator".
    if token.kind == "name" and token.text.lower() in KEYWORDS:
        return f" (keywords are lower-case: write '{token.text.lower()}')"
    return ""


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0
        self.conditions = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def previous(self) -> _Token | None:
        return self.tokens[self.index - 1] if self.index else None

    def at_keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "keyword" and token.text == word

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nesting deeper than {MAX_DEPTH} levels", token.position)

    def count_condition(self, position: int) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(f"too many conditions (at most {MAX_CONDITIONS})", position)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise FilterError("empty filter", 0)
        node = self.or_expr()
        token = self.peek()
        if token.kind == ")":
            raise FilterError("unexpected ')'", token.position)
        if token.kind != "end":
            raise FilterError(
                f"expected 'and', 'or' or the end of the filter, found {_describe(token)}{_keyword_hint(token)}",
                token.position,
            )
        return node

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.at_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(operands[0].position, tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.at_keyword("and"):
            self.advance()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(operands[0].position, tuple(operands))

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            token = self.advance()
            self.enter(token)
            operand = self.not_expr()
            self.depth -= 1
            return Not(token.position, operand)
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.advance()
            self.enter(token)
            node = self.or_expr()
            close = self.peek()
            if close.kind != ")":
                raise FilterError(f"expected ')' to close '(' opened at position {token.position}", close.position)
            self.advance()
            self.depth -= 1
            return node
        if token.kind == "prefix":
            return self.tag() if token.text == "tag" else self.has()
        if token.kind == "name":
            return self.comparison()
        if token.kind == ")":
            raise FilterError("unexpected ')'", token.position)
        if token.kind == "end":
            previous = self.previous()
            after = f" after {_describe(previous)}" if previous else ""
            raise FilterError(f"expected a condition{after}", token.position)
        if token.kind in ("string", "number") or token.text in ("true", "false"):
            raise FilterError(
                f"expected a field, tag: or has:, found the value {_describe(token)} (put the field first)",
                token.position,
            )
        raise FilterError(f"expected a condition, found {_describe(token)}", token.position)

    def tag(self) -> Node:
        prefix = self.advance()
        self.count_condition(prefix.position)
        token = self.advance()
        if token.kind != "name":
            raise FilterError(f"expected a tag name after 'tag:', found {_describe(token)}", token.position)
        if "." in token.text:
            raise FilterError("tag names may not contain '.'", token.position + token.text.index("."))
        _check_name(token.text, token.position, "tag")
        return Tag(prefix.position, token.text)

    def has(self) -> Node:
        prefix = self.advance()
        self.count_condition(prefix.position)
        token = self.advance()
        if token.kind != "name":
            raise FilterError(f"expected a field after 'has:', found {_describe(token)}", token.position)
        field = _resolve_field(token)
        if field.kind == "column":
            raise FilterError(
                f"has: works with attributes and versions; every device has {_show(field.text)}", token.position
            )
        return Has(prefix.position, field)

    def comparison(self) -> Node:
        token = self.advance()
        self.count_condition(token.position)
        field = _resolve_field(token)
        next_token = self.peek()
        if next_token.kind == "op":
            op = self.advance().text
            value_token, value = self.literal(after=op)
            _check_value(field, op, value, value_token)
            return Comparison(token.position, field, op, value)
        if self.at_keyword("in"):
            self.advance()
            return InList(token.position, field, self.in_values(field), False)
        if self.at_keyword("not"):
            self.advance()
            if not self.at_keyword("in"):
                raise FilterError(
                    f"expected 'in' after 'not', found {_describe(self.peek())}"
                    " (to negate a condition, put 'not' before the field)",
                    self.peek().position,
                )
            self.advance()
            return InList(token.position, field, self.in_values(field), True)
        raise FilterError(
            f"expected an operator after {_show(token.text)}, found {_describe(next_token)}{_keyword_hint(next_token)}",
            next_token.position,
        )

    def in_values(self, field: Field) -> tuple[Value, ...]:
        opening = self.advance()
        if opening.kind != "(":
            raise FilterError(f"expected '(' after 'in', found {_describe(opening)}", opening.position)
        if self.peek().kind == ")":
            raise FilterError("empty list: 'in' needs at least one value", self.peek().position)
        values: list[Value] = []
        while True:
            value_token, value = self.literal(after=self.previous().text)  # type: ignore[union-attr]
            if len(values) == MAX_IN_VALUES:
                raise FilterError(f"more than {MAX_IN_VALUES} values in the list", value_token.position)
            _check_value(field, "in", value, value_token)
            values.append(value)
            separator = self.peek()
            if separator.kind == ",":
                self.advance()
                if self.peek().kind == ")":  # a trailing comma
                    break
            elif separator.kind == ")":
                break
            elif separator.kind == "end":
                raise FilterError(
                    f"expected ')' to close '(' opened at position {opening.position}", separator.position
                )
            else:
                raise FilterError(f"expected ',' or ')' in the list, found {_describe(separator)}", separator.position)
        self.advance()
        return tuple(values)

    def literal(self, after: str) -> tuple[_Token, Value]:
        token = self.advance()
        if token.kind in ("string", "number"):
            return token, token.value  # type: ignore[return-value]  # set for these kinds
        if token.kind == "keyword" and token.text in ("true", "false"):
            return token, token.text == "true"
        message = f"expected a value after {_show(after)}"
        if token.kind == "end":
            raise FilterError(message, token.position)
        hint = ""
        if token.kind == "name":
            if token.text.lower() in ("true", "false"):
                hint = " (true and false are lower-case)"
            elif token.text.lower() in ("null", "none"):
                hint = " (there is no null: use 'not has:FIELD' for a missing value)"
            else:
                hint = " (put text in quotes)"
        raise FilterError(f"{message}, found {_describe(token)}{hint}", token.position)


def _check_name(name: str, position: int, what: str) -> None:
    if not name:
        raise FilterError("expected a name after '.'", position)
    if name[0] not in _NAME_START:
        raise FilterError(f"{what} names start with a letter or '_'", position)
    if "__" in name:
        raise FilterError(f"{what} names may not contain '__'", position + name.index("__"))
    if len(name) > MAX_NAME_LENGTH:
        raise FilterError(f"{what} names are at most {MAX_NAME_LENGTH} characters", position)


def _resolve_field(token: _Token) -> Field:
    parts = token.text.split(".")
    offsets = [token.position]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part) + 1)
    if len(parts) > 2:
        raise FilterError("a field has at most one '.' (attr.NAME or version.COMPONENT)", offsets[2] - 1)
    for part, offset in zip(parts, offsets, strict=True):
        _check_name(part, offset, "field")
    if len(parts) == 2:
        prefix, key = parts
        if prefix not in JSON_PREFIXES:
            raise FilterError(
                f"unknown field prefix {_show(prefix + '.')} (use attr.NAME or version.COMPONENT)", offsets[0]
            )
        kind, key_offset = prefix, offsets[1]
    else:
        name = parts[0]
        if name in COLUMN_FIELDS:
            return Field(token.text, "column", COLUMN_FIELDS[name], token.position)
        if name in JSON_PREFIXES:
            example = "os" if name == "version" else "region"
            raise FilterError(f"'{name}' needs a name after it, e.g. {name}.{example}", token.position)
        if name in ("tag", "has"):
            raise FilterError(
                f"did you mean '{name}:'? (write attr.{name} for an attribute named {name})", token.position
            )
        kind, key, key_offset = "attr", name, token.position
    if key.endswith("_"):
        # Joined into "attributes__key___in", a trailing "_" would shift Django's "__" split.
        raise FilterError("field names may not end with '_'", key_offset + len(key) - 1)
    json_field = Device._meta.get_field(JSON_PREFIXES[kind])
    if not isinstance(json_field.get_transform(key), KeyTransformFactory):
        # Only reachable if a transform with this name is ever registered on JSONField.
        raise FilterError(f"{_show(key)} cannot be used as a field name", key_offset)
    return Field(token.text, kind, key, token.position)


def _check_value(field: Field, op: str, value: Value, token: _Token) -> None:
    if field.is_text and not isinstance(value, str):
        raise FilterError(f"{field.text} is text, compare it with a string", token.position)
    if op == "~" and not isinstance(value, str):
        raise FilterError("'~' matches text: give it a string", token.position)
    if op in ORDERING_LOOKUPS and isinstance(value, bool):
        raise FilterError(f"'{op}' compares numbers or strings, not true or false", token.position)


def parse_filter(text: str) -> Node:
    """Parse filter text into its AST; raise FilterError when it is not a valid filter."""
    if not isinstance(text, str):
        raise FilterError("the filter must be text", 0)
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH)
    return _Parser(text).parse()


# --- Compiler --------------------------------------------------------------------------------------


class _JSONTypeIs(Func):
    """True where `key` of a JSON column holds a value of JSON type `json_type` ("number" or "string").

    Django's JSON ordering lookups compare across types (PostgreSQL sorts every string below every
    number, SQLite the other way round), so ordering and `~` are guarded by this to stay typed.
    """

    output_field = BooleanField()
    _SQLITE_TYPES: ClassVar[dict[str, tuple[str, str]]] = {"number": ("integer", "real"), "string": ("text", "text")}

    def __init__(self, column: str, key: str, json_type: str):
        super().__init__(F(column))
        self.column = column
        self.key = key
        self.json_type = json_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.column!r}, {self.key!r}, {self.json_type!r})"

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[Any, ...]]:
        raise NotSupportedError("cohort filters support PostgreSQL and SQLite only")

    # COALESCE keeps the result two-valued: a missing key gives false rather than NULL, so that
    # `not` stays the exact complement of the condition.
    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[Any, ...]]:
        column_sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"COALESCE(jsonb_typeof({column_sql} -> %s) = %s, false)", (*params, self.key, self.json_type)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[Any, ...]]:
        column_sql, params = compiler.compile(self.get_source_expressions()[0])
        types = self._SQLITE_TYPES[self.json_type]
        path = compile_json_path([self.key])
        return f"COALESCE(JSON_TYPE({column_sql}, %s) IN (%s, %s), 0)", (*params, path, *types)


def _json_lookup(field: Field, lookup: str) -> str:
    column = field.column
    json_field = Device._meta.get_field(column)
    # "attributes__in" would be JSONField's own `in` lookup, not the key "in": spell out `exact`
    # whenever the key collides with a lookup name.
    if lookup == "exact" and json_field.get_lookup(field.name) is None:
        parts = [column, field.name]
    else:
        parts = [column, field.name, lookup]
    path = LOOKUP_SEP.join(parts)
    if path.split(LOOKUP_SEP) != parts:  # guaranteed by the name rules; never trust them blindly
        raise FilterError(f"{_show(field.text)} cannot be used as a field name", field.position)
    return path


def _compare(field: Field, op: str, value: Value) -> Q:
    if field.kind == "column":
        if op == "==":
            return Q(**{field.column: value})
        if op == "!=":
            return ~Q(**{field.column: value})
        lookup = "icontains" if op == "~" else ORDERING_LOOKUPS[op]
        return Q(**{f"{field.column}__{lookup}": value})
    # A missing key makes the comparison NULL in SQL, and NOT NULL is NULL again: requiring the
    # key keeps every condition true or false, so `not` selects exactly the other devices.
    present = Q(**{f"{field.column}__has_key": field.name})
    if op == "==":
        return present & Q(**{_json_lookup(field, "exact"): value})
    if op == "!=":
        return present & ~Q(**{_json_lookup(field, "exact"): value})
    json_type = "string" if isinstance(value, str) else "number"
    lookup = "icontains" if op == "~" else ORDERING_LOOKUPS[op]
    return Q(_JSONTypeIs(field.column, field.name, json_type)) & Q(**{_json_lookup(field, lookup): value})


def _in_list(node: InList) -> Q:
    field = node.field
    if field.kind == "column":
        matches = Q(**{f"{field.column}__in": list(node.values)})
        return ~matches if node.negated else matches
    present = Q(**{f"{field.column}__has_key": field.name})
    matches = Q(**{_json_lookup(field, "in"): list(node.values)})
    return present & (~matches if node.negated else matches)


def _to_q(node: Node) -> Q:
    if isinstance(node, Or):
        return reduce(or_, (_to_q(operand) for operand in node.operands))
    if isinstance(node, And):
        return reduce(and_, (_to_q(operand) for operand in node.operands))
    if isinstance(node, Not):
        return ~_to_q(node.operand)
    if isinstance(node, Tag):
        return Q(tags__has_key=node.name)
    if isinstance(node, Has):
        return Q(**{f"{node.field.column}__has_key": node.field.name})
    if isinstance(node, InList):
        return _in_list(node)
    if isinstance(node, Comparison):
        return _compare(node.field, node.op, node.value)
    raise TypeError(f"not a filter node: {node!r}")


def compile_filter(text: str) -> Q:
    """Compile filter text into a Q over Device; raise FilterError when it is not a valid filter."""
    return _to_q(parse_filter(text))
