"""Parsing of configuration values and the cattrs converter that applies it.

Values arrive either typed (from a YAML or JSON file) or as strings (from the
environment).  Every hook accepts both and raises :class:`ValueFormError` with
a sentence that describes the expected form; the loader adds the key name and
the source (api.md §6.1 "Values").
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NewType

import cattrs

__all__ = [
    "GroupMap",
    "Seconds",
    "StrMap",
    "StrTuple",
    "ValueFormError",
    "make_converter",
    "parse_bool",
    "parse_duration",
    "parse_float",
    "parse_group_map",
    "parse_int",
    "parse_str",
    "parse_str_map",
    "parse_str_tuple",
]

Seconds = NewType("Seconds", float)
"""A duration in seconds (`300ms`, `30s`, `5m`, `1h30m`, or a bare number of seconds)."""

StrTuple = tuple[str, ...]
StrMap = Mapping[str, str]
GroupMap = Mapping[str, tuple[str, ...]]


class ValueFormError(ValueError):
    """A configuration value does not have the expected form.

    `shown` quotes the offending value, `problem` says what is wrong and what
    form is expected; :meth:`redacted` omits the value (for keys and secrets).
    """

    def __init__(self, shown: str, problem: str) -> None:
        super().__init__(f"{shown} {problem}")
        self.shown = shown
        self.problem = problem

    def redacted(self) -> str:
        return f"the value {self.problem}"


_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU, accepted by Go as well
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_NUMBER = re.compile(rf"[+-]?{_NUMBER}")
_DURATION = re.compile(rf"[+-]?(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(rf"[+-]?{_NUMBER}(?:[eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

_DURATION_FORM = "use a duration such as 300ms, 30s, 5m or 1h30m, or a number of seconds"


def _show(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def parse_duration(value: object) -> float:
    """Return seconds for a Go-style duration string or a number of seconds."""
    if isinstance(value, bool):
        raise ValueFormError(_show(value), f"is not a duration; {_DURATION_FORM}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueFormError(_show(value), f"is not a duration; {_DURATION_FORM}")
    text = value.strip()
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueFormError(_show(value), f"is not a duration; {_DURATION_FORM}")
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
    )
    return sign * total


def parse_bool(value: object) -> bool:
    """`true`/`false`/`1`/`0` in any case, or a YAML/JSON boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueFormError(_show(value), "is not a boolean; use true, false, 1 or 0")


def parse_int(value: object) -> int:
    """A decimal integer (a number in a file, or digits with an optional sign)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueFormError(_show(value), "is not an integer; use decimal digits such as 5")


def parse_float(value: object) -> float:
    """A decimal number such as `10` or `0.5`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value.strip())
    raise ValueFormError(_show(value), "is not a number; use a decimal number such as 10 or 0.5")


def parse_str(value: object) -> str:
    """A string; numbers and booleans written unquoted in YAML are accepted as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueFormError(_show(value), "is not a text value")


def _json(value: str, expected: type, form: str) -> Any:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueFormError(_show(value), f"is not valid JSON ({exc.msg}); {form}") from exc
    if not isinstance(parsed, expected):
        raise ValueFormError(_show(value), f"is not a JSON {expected.__name__}; {form}")
    return parsed


_LIST_FORM = 'use a comma-separated list (a,b) or a JSON array (["a","b"])'
_MAP_FORM = 'use a JSON object such as {"name": "value"}'
_GROUP_FORM = 'use a JSON object such as {"group": ["user1", "user2"]}'


def parse_str_tuple(value: object) -> tuple[str, ...]:
    """A list of strings: a sequence, a comma-separated string or a JSON array string.

    Items of a comma-separated string are trimmed and empty items are dropped.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = _json(text, list, _LIST_FORM)
        else:
            return tuple(item.strip() for item in text.split(",") if item.strip())
    if isinstance(value, list | tuple):
        items: list[str] = []
        for item in value:
            if isinstance(item, list | tuple | dict) or item is None:
                raise ValueFormError(f"list item {_show(item)}", f"is not text; {_LIST_FORM}")
            items.append(parse_str(item))
        return tuple(items)
    raise ValueFormError(_show(value), f"is not a list; {_LIST_FORM}")


def parse_str_map(value: object) -> dict[str, str]:
    """A map of strings: a mapping or a JSON object string."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = _json(value.strip(), dict, _MAP_FORM) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueFormError(_show(value), f"is not a map; {_MAP_FORM}")
    result: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, list | tuple | dict):
            raise ValueFormError(f"the value of {_show(str(key))}", f"is not text; {_MAP_FORM}")
        result[parse_str(key)] = parse_str(item)
    return result


def parse_group_map(value: object) -> dict[str, tuple[str, ...]]:
    """A map of name to list of names: a mapping or a JSON object string."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = _json(value.strip(), dict, _GROUP_FORM) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueFormError(_show(value), f"is not a map; {_GROUP_FORM}")
    result: dict[str, tuple[str, ...]] = {}
    for key, item in value.items():
        try:
            result[parse_str(key)] = parse_str_tuple(item)
        except ValueFormError as exc:
            raise ValueFormError(f"group {_show(str(key))}: {exc.shown}", exc.problem) from exc
    return result


def _hook(parse: Callable[[object], Any]) -> Callable[[object, Any], Any]:
    def structure(value: object, _type: Any) -> Any:
        return parse(value)

    return structure


def make_converter() -> cattrs.Converter:
    """Return a converter that structures raw file/environment values into settings."""
    converter = cattrs.Converter()
    converter.register_structure_hook(Seconds, _hook(parse_duration))
    converter.register_structure_hook(bool, _hook(parse_bool))
    converter.register_structure_hook(int, _hook(parse_int))
    converter.register_structure_hook(float, _hook(parse_float))
    converter.register_structure_hook(str, _hook(parse_str))
    converter.register_structure_hook_func(lambda t: t == StrTuple, _hook(parse_str_tuple))
    converter.register_structure_hook_func(lambda t: t == StrMap, _hook(parse_str_map))
    converter.register_structure_hook_func(lambda t: t == GroupMap, _hook(parse_group_map))
    return converter
