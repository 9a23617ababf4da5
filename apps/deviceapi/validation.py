"""Validation of device-sent JSON: every problem names its field; nothing is written on error."""

import json
import re
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
COMPONENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+~-]{0,63}$")
ATTR_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_INT = 2**53  # larger counters are nonsense and would not survive a JSON round trip
MAX_COUNTER = 1_000_000
MAX_DEPTH = 8


class Invalid(Exception):
    """A request body failed validation; errors is a list of {"field", "detail"}."""

    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("; ".join(f"{e['field']}: {e['detail']}" for e in errors))
        self.errors = errors


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()], default=level + 1)
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value], default=level + 1)
    return level


def parse_json_object(body: bytes, *, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise Invalid([{"field": "body", "detail": f"larger than {max_bytes} bytes"}])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid([{"field": "body", "detail": f"not UTF-8 (byte {exc.start})"}]) from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise Invalid([{"field": "body", "detail": "JSON nested too deeply"}]) from exc
    except ValueError as exc:
        raise Invalid([{"field": "body", "detail": f"not valid JSON: {exc}"}]) from exc
    if not isinstance(data, dict):
        raise Invalid([{"field": "body", "detail": "must be a JSON object"}])
    if _depth(data) > MAX_DEPTH:
        raise Invalid([{"field": "body", "detail": f"JSON nested deeper than {MAX_DEPTH} levels"}])
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


class Checker:
    """Collects errors while reading fields, so a client sees all of them at once."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.errors: list[dict[str, str]] = []

    def error(self, field: str, detail: str) -> None:
        self.errors.append({"field": field, "detail": detail})

    def done(self) -> None:
        if self.errors:
            raise Invalid(self.errors)

    def unknown(self, allowed: set[str], obj: dict | None = None, prefix: str = "") -> None:
        for key in sorted(set(obj if obj is not None else self.data) - allowed):
            self.error(f"{prefix}{key}"[:100], "unknown field")

    def integer(self, obj: dict, key: str, field: str, *, required: bool, low: int = 0, high: int = MAX_INT):
        if key not in obj:
            if required:
                self.error(field, "is required")
            return None
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(field, "must be an integer")
            return None
        if not low <= value <= high:
            self.error(field, f"must be between {low} and {high}")
            return None
        return value

    def string(self, obj: dict, key: str, field: str, *, required: bool, pattern: re.Pattern | None = None,
               max_len: int = 200) -> str | None:
        if key not in obj:
            if required:
                self.error(field, "is required")
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.error(field, "must be a string")
            return None
        if len(value) > max_len:
            self.error(field, f"longer than {max_len} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(field, f"does not match {pattern.pattern}")
            return None
        return value

    def attributes(self, obj: dict, key: str, field: str) -> dict[str, Any] | None:
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, dict):
            self.error(field, "must be an object")
            return None
        if len(value) > 64:
            self.error(field, "at most 64 attributes")
            return None
        clean: dict[str, Any] = {}
        for name, item in value.items():
            sub = f"{field}.{name}"[:100]
            if not ATTR_KEY_RE.match(name) or "__" in name:
                self.error(sub, "attribute names are letters, digits, '_' and '-' (no '__'), at most 64")
            elif isinstance(item, bool) or item is None:
                clean[name] = item
            elif isinstance(item, int):
                if abs(item) > MAX_INT:
                    self.error(sub, "integer out of range")
                else:
                    clean[name] = item
            elif isinstance(item, float):
                clean[name] = item
            elif isinstance(item, str):
                if len(item) > 200:
                    self.error(sub, "longer than 200 characters")
                else:
                    clean[name] = item
            else:
                self.error(sub, "must be a string, number, boolean or null")
        return clean

    def tags(self, obj: dict, key: str, field: str) -> list[str] | None:
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, list) or len(value) > 32:
            self.error(field, "must be a list of at most 32 tags")
            return None
        out = []
        for index, tag in enumerate(value):
            if not isinstance(tag, str) or not ATTR_KEY_RE.match(tag) or "__" in tag:
                self.error(f"{field}[{index}]", "tags are letters, digits, '_' and '-', at most 64")
            else:
                out.append(tag)
        return out
