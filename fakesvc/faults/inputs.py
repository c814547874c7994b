"""The body of a fault-control request or a rules file, read and checked before anything changes.

``PUT /chaos``, ``PUT /chaos/services`` and the sink's ``PUT /sink/faults``
share these, so a bad body gets the same answer everywhere: a 400 that names
the key. A number that is not finite never gets past :func:`number`: a NaN
or an infinity in a delay would corrupt the event loop's timers. A key
written twice in one object is refused with its path (JSON keeps the last
silently: ``{"rules": [...], "rules": []}`` would clear the rules), and text
holds no control characters (a newline or U+202E would forge or reorder the
log lines the text goes into).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import yaml
from aiohttp import web

# Bounds shared by the services' rules and the sink's faults (the README lists them).
MAX_DELAY_MS = 600_000.0  # an added latency
MAX_WINDOW_S = 7 * 24 * 3600.0  # a schedule's start or length, an outage window

# Unicode categories refused in text: controls (Cc: newline, NUL, ESC), formats (Cf: U+202E, U+200B),
# surrogates (Cs: no UTF-8 for them), and the line and paragraph separators a log viewer breaks lines at.
CONTROL_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
SHOWN_KEY_CHARS = 64  # a key quoted in an error is cut here


class InputError(ValueError):
    """A control input that cannot be used; the message says where (``rules[1].latency_ms``)."""


async def read_json(request: web.Request) -> Any:
    """The request's body as JSON; :class:`InputError` when it is not JSON, nests too deeply or repeats a key.

    A body over the application's ``client_max_size`` is aiohttp's 413 before
    anything is parsed. ``NaN``, ``Infinity`` and integers too long for Python
    (over 4300 digits, read as infinity) parse and are refused by
    :func:`number` or :func:`whole_number`, which can name their key.
    """
    return parse_json(await request.read(), "body", named=False)


def parse_json(raw: str | bytes, source: str, *, named: bool = True) -> Any:
    """A JSON document, strictly: a repeated key is an :class:`InputError` naming it and its path in ``source``.

    ``named``: the path follows the source's name (``rules.json: inventory-service[0]``); else it stands
    alone, as a body's keys are named (``rules[0]``), and the source is named only at the top.
    """
    try:
        document = json.loads(raw, object_pairs_hook=_object, parse_int=_integer)
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except ValueError as exc:  # not JSON, or not UTF-8
        line = f" (line {exc.lineno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{source}: must be JSON{line}") from None
    _refuse_repeated_keys(document, source, named)
    return document


def parse_yaml(text: str, source: str) -> Any:
    """A YAML document (safe: no Python objects), strictly: a repeated key is refused like JSON's."""
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        line = f" (line {exc.problem_mark.line + 1}: {exc.problem})" if exc.problem_mark else ""
        raise InputError(f"{source}: must be YAML{line}") from None
    except (yaml.YAMLError, TypeError):  # a syntax error without a place; an unhashable key
        raise InputError(f"{source}: must be YAML") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply") from None
    _refuse_repeated_keys(document, source, True)
    return document


class _Repeated(dict[Any, Any]):
    """An object of the document that wrote ``key`` more than once (refused once its path is known)."""

    key: Any = None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            repeated = _Repeated(pairs)
            repeated.key = key
            return repeated
        out[key] = value
    return out


def _integer(digits: str) -> int | float:
    try:
        return int(digits)
    except ValueError:  # longer than sys.get_int_max_str_digits(): as a float it is infinite, refused by its key
        return float(digits)


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that marks a mapping writing a key twice, as :func:`_object` does for JSON."""

    def construct_repeatable_map(self, node: yaml.MappingNode) -> Any:
        seen: set[Any] = set()
        repeated: Any = None
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and repeated is None:
                key = self.construct_object(key_node)
                if key in seen:
                    repeated = key
                seen.add(key)
        data: dict[Any, Any] = {} if repeated is None else _Repeated()
        if repeated is not None:
            data.key = repeated  # type: ignore[attr-defined]
        yield data
        data.update(self.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_repeatable_map)


def _refuse_repeated_keys(document: Any, source: str, named: bool) -> None:
    """Walk the document (each container once: YAML aliases share them) and refuse the first repeated key."""
    stack: list[tuple[Any, str]] = [(document, "")]
    seen: set[int] = set()
    while stack:
        value, where = stack.pop()
        if not isinstance(value, (dict, list)) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, _Repeated):
            place = f"{source}: {where}" if named and where else where or source
            raise InputError(f"{place}: key {show_key(value.key)} is written twice (write each key once)")
        if isinstance(value, dict):
            stack.extend((item, key_path(where, key)) for key, item in reversed(value.items()))
        else:
            stack.extend((item, f"{where}[{index}]") for index, item in reversed(list(enumerate(value))))


def show_key(key: Any) -> str:
    """A key as an error quotes it: ``repr`` (a control character shows as ``\\n`` or ``\\u202e``), cut short."""
    text = key if isinstance(key, str) else str(key)
    if len(text) > SHOWN_KEY_CHARS:
        text = text[: SHOWN_KEY_CHARS - 1] + "\u2026"
    return repr(text)


def key_path(where: str, key: Any) -> str:
    """``where.key`` for a plain key, ``where['odd key']`` (quoted as :func:`show_key` does) otherwise."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{where}.{key}" if where else key
    return f"{where}[{show_key(key)}]"


def number(where: str, value: Any, *, low: float, high: float) -> float:
    """``value`` as a float when it is a JSON number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: must be a number")
    if not low <= value <= high:  # also refuses NaN (every comparison is false) and the infinities
        raise InputError(f"{where}: must be a finite number between {low:g} and {high:g}")
    return float(value)


def whole_number(where: str, value: Any, *, low: int, high: int) -> int:
    """``value`` when it is a JSON integer (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{where}: must be a whole number between {low} and {high}")
    return value


def text(where: str, value: Any, *, max_chars: int) -> str:
    """``value`` when it is a non-empty string of at most ``max_chars`` characters, none of them a control."""
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise InputError(f"{where}: must be a non-empty string of at most {max_chars} characters")
    bad = next((char for char in value if unicodedata.category(char) in CONTROL_CATEGORIES), None)
    if bad is not None:
        raise InputError(f"{where}: must not contain control characters (found U+{ord(bad):04X} at {value.index(bad)})")
    return value
