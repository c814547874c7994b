"""Read a graph file into a :class:`~fakesvc.graph.model.Graph`, checked whole before anything is built.

Every problem of a document is reported, one path-named line each
(``mini.yaml: services[2].routes[0].script[1].call.service: no service named
'stok' (did you mean 'stock'?)``), so one run of ``python -m fakesvc.graph
check`` says all there is to fix (up to 100 problems: a file of garbage is not
a million lines). A file over 4 MiB (``FAKESVC_GRAPH_MAX_BYTES``) is refused
before it is read, and one of more than 250,000 values while it is read: a
wrong file costs seconds, not minutes. The checks are the authority; the JSON
Schema next to this file (``schema.json``) describes the same grammar for
editors. Light to import (no aiohttp): the container probe reads graphs too.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import sys
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fakesvc.graph.model import (
    FAILURE_KEYS,
    LOG_LEVELS,
    Call,
    FailIf,
    Failure,
    FromCall,
    Graph,
    HangIf,
    KeyFlag,
    Log,
    Parallel,
    Route,
    Service,
    Sleep,
    Span,
    Step,
    placeholders,
)
from fakesvc.raising import exception_problem
from fakesvc.settings import ConfigError

GRAPHS_DIR = Path(__file__).parent / "graphs"
BUILTIN_GRAPHS: tuple[str, ...] = tuple(sorted(path.stem for path in GRAPHS_DIR.glob("*.yaml")))

# Caps: nothing unbounded reaches a timer, a log line or the walk itself.
MAX_FILE_BYTES = 4 * 1024 * 1024  # refused before it is read: pure-Python YAML takes ~5 s and ~250 MB per MB
MAX_BYTES_ENV = "FAKESVC_GRAPH_MAX_BYTES"
MAX_VALUES = 250_000  # YAML nodes parsed, then values the walk reads (an alias counts at each use)
MAX_PROBLEMS = 100  # a file of garbage is refused in a screenful, not in a million lines
MAX_DIGITS = 308  # a longer whole number is past any float: read as too long, never converted
MAX_ATTRIBUTE_INT = 2**63  # an attribute or response number is a signed 64-bit integer (OTLP's int_value)
MAX_NAME_CHARS = 64
MAX_MESSAGE_CHARS = 200
MAX_PATH_CHARS = 256
MAX_DEPTH = 8  # script nesting: a route's script is level 1, each span or parallel inside one more
MAX_SERVICES = 100
MAX_ROUTES = 100
MAX_STEPS = 10_000  # in the whole graph: YAML aliases cannot make the walk explode
MAX_SLEEP_MS = 600_000.0
MIN_TIMEOUT_S = 0.001  # a shorter wait is below what a timer and one loopback request can honour
MAX_TIMEOUT_S = 3600.0
MAX_HANG_S = 3600.0
MAX_WEIGHT = 1_000_000.0
MAX_FALSE_ONE_IN = 1_000_000

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
ON_ERROR = ("fail", "ignore")
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/telemetry")  # and anything under /chaos

_GRAPH_NAME = (re.compile(r"[a-z0-9][a-z0-9-]*"), "lower-case letters, digits and '-'")
_SERVICE_NAME = (re.compile(r"[a-z][a-z0-9-]{0,62}"), "lower-case letters, digits and '-', starting with a letter")
_CODE = (re.compile(r"[A-Z][A-Z0-9_]*"), "upper-case letters, digits and '_', starting with a letter")
_PARAMETER = (re.compile(r"[a-z][a-z0-9_]*"), "lower-case letters, digits and '_', starting with a letter")
_EXCEPTION = (re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "an exception class name like ValueError")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_KEY_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL = ("Cc", "Cf", "Cs")
_FLOW_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")

_TOP = ({"name", "services"}, {"parameters"})
_SERVICE = ({"name", "routes"}, {"port", "code_prefix", "capacity"})
MAX_CAPACITY = 100_000  # requests a service works on at once (fakesvc/service/resources.py)
_ROUTE = ({"path", "script"}, {"method", "entry", "weight", "completed", "failed", "slow_code", "response"})
_SLEEP = ({"ms"}, set[str]())
_LOG = ({"level", "message"}, set[str]())
_CALL = ({"service", "path", "timeout_s"}, {"method", "on_error", "errors"})
_FAILURE = ({"status"}, {"error_code", "message"})
_FAIL_IF = ({"key_contains", "status", "exception", "message"}, {"error_code"})
_HANG_IF = ({"key_contains", "s"}, {"detail"})
_SPAN = ({"name", "script"}, {"attributes"})
_FROM_CALL = ({"from_call", "field"}, set[str]())
_KEY_FLAG = ({"false_one_in"}, set[str]())

_MISSING: Any = object()  # a required key that is absent (already reported by _mapping)
Node = tuple[str, str]  # (service, "GET /path"): a route as a vertex of the call graph


class GraphError(ConfigError):
    """A graph document that cannot be used; ``problems`` are its lines, ``<source>: <path>: <what>`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Stop(Exception):
    """The walk gives up: too many problems or too many values (the last problem says which)."""


@dataclass
class _Draft:
    """A service as far as the first pass read it: what calls into it are checked against."""

    where: str
    raw_name: Any
    name: str | None
    port: int | None
    code_prefix: str | None
    capacity: int | None
    routes: list[tuple[str, dict[str, Any], dict[str, Any]]]  # (where, Route fields so far, the raw route)
    complete: bool  # every route head read cleanly: a call that matches none is then truly wrong


@dataclass
class _Context:
    """The walk's state: problems so far, parameters, the services of the first pass and the call edges."""

    source: str
    problems: list[str] = field(default_factory=list)
    parameters: dict[str, float] = field(default_factory=dict)
    broken_parameters: set[str] = field(default_factory=set)
    drafts: list[_Draft] = field(default_factory=list)
    edges: dict[Node, list[tuple[Node, str]]] = field(default_factory=dict)
    attempted: dict[Node, set[str]] = field(default_factory=dict)  # calls to a known service that matched no route
    steps: int = 0
    unresolved: bool = False  # a bad route head or an unknown callee: reachability would be guesswork

    values: int = 0  # read so far: aliases can make a small file a huge walk

    def add(self, where: str, what: str) -> None:
        """One problem; past :data:`MAX_PROBLEMS` the walk stops (:class:`_Stop`) with a line saying so."""
        if len(self.problems) == MAX_PROBLEMS:
            self.problems.append(f"{self.source}: stopped after {MAX_PROBLEMS} problems: fix these and check again")
            raise _Stop
        self.problems.append(f"{self.source}: {where}: {what}" if where else f"{self.source}: {what}")

    def spend(self, where: str, count: int) -> None:
        """Count ``count`` values about to be read; past :data:`MAX_VALUES` the walk stops (:class:`_Stop`)."""
        self.values += count
        if self.values > MAX_VALUES:
            self.problems.append(
                f"{self.source}: {where}: more than {MAX_VALUES:,} values to read (a YAML alias counts each time it is used)"
            )
            raise _Stop

    def draft(self, name: str) -> _Draft | None:
        return next((draft for draft in self.drafts if draft.name == name), None)


@dataclass
class _Scope:
    """The route whose script is being read: its key, its calls so far and the services they name."""

    service: str
    node: Node
    key: str | None  # None: the route's path is bad, so its calls' keys go unchecked
    where: str
    calls: int = 0
    first_call: str | None = None
    called: list[str] = field(default_factory=list)


# --- entry points -----------------------------------------------------------------------------------------------


def load_graph(source: str | os.PathLike[str], parameters: Mapping[str, float] | None = None) -> Graph:
    """The graph of a built-in name (``checkout``) or a YAML/JSON file; :class:`GraphError` listing every problem.

    ``parameters`` override the file's ``parameters:`` of the same name (the
    settings' timeouts); names the file does not declare are ignored.
    """
    overrides = tuple(sorted((parameters or {}).items()))
    if isinstance(source, str) and source in BUILTIN_GRAPHS:
        return _builtin(source, overrides)
    return _load_file(Path(source), os.fspath(source), dict(overrides))


@functools.lru_cache(maxsize=32)
def _builtin(name: str, overrides: tuple[tuple[str, float], ...]) -> Graph:
    """Built-in graphs are read once per set of overrides: every process of a run loads the same one."""
    return _load_file(GRAPHS_DIR / f"{name}.yaml", f"{name}.yaml", dict(overrides))


def _load_file(path: Path, source: str, parameters: Mapping[str, float]) -> Graph:
    source = _printable(source)  # a file name holding a newline must not split a problem's line
    return parse_graph(read_document(path, source), source, parameters)


def read_document(path: str | os.PathLike[str], source: str | None = None) -> Any:
    """A graph file's document, not yet checked: JSON for ``.json``, YAML otherwise; :class:`GraphError` if unreadable."""
    path, source = Path(path), _printable(source or os.fspath(path))
    limit = max_file_bytes()
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)  # never more: a device or a growing file is refused like a big one
    except FileNotFoundError:
        raise GraphError([_not_found(source)]) from None
    except OSError as exc:
        raise GraphError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limit:
        raise GraphError(
            [
                f"{source}: larger than {limit:,} bytes, the most a graph file may hold "
                f"(a graph is a few KB; raise {MAX_BYTES_ENV} if this one is meant)"
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GraphError([f"{source}: not UTF-8 text (byte {exc.start})"]) from None
    return _parse_text(text, source, path.suffix.lower() == ".json")


def max_file_bytes() -> int:
    """The size cap of a graph file: ``FAKESVC_GRAPH_MAX_BYTES`` (bytes, > 0), else 4 MiB."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None or not raw.strip():
        return MAX_FILE_BYTES
    try:
        value = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else 0
    except ValueError:  # more digits than Python reads
        value = 0
    if value <= 0:
        raise GraphError([f"{MAX_BYTES_ENV}: must be a whole number of bytes > 0 (got {_kind(raw)})"])
    return value


def _printable(text: str) -> str:
    """A name from outside (a file name, a key) as one line of plain text: escaped when it holds anything else."""
    return text if text.isprintable() else repr(text)[1:-1]


def _not_found(source: str) -> str:
    """A missing file that may have been meant as a built-in name says so."""
    if os.sep in source or "/" in source or Path(source).suffix:
        return f"{source}: cannot read: No such file or directory"
    known = ", ".join(BUILTIN_GRAPHS) or "none"
    return f"{source}: no such file, nor a built-in graph{_suggest(source, BUILTIN_GRAPHS)} (built-in: {known})"


def _parse_text(text: str, source: str, is_json: bool) -> Any:
    """The document of a file's text: JSON for ``.json``, YAML (safe, no duplicate keys) otherwise."""
    if not text.strip():
        return None
    try:
        if is_json:
            document = json.loads(text, parse_int=_json_int, object_pairs_hook=_JsonObject)
            _json_duplicates(document, source)
            return document
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except _TooManyValues as exc:
        raise GraphError(
            [f"{source}: line {exc.line}: more than {MAX_VALUES:,} values (a graph has far fewer)"]
        ) from None
    except json.JSONDecodeError as exc:
        raise GraphError([f"{source}: line {exc.lineno}: JSON syntax error: {exc.msg}"]) from None
    except yaml.MarkedYAMLError as exc:
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise GraphError([f"{source}: {line}YAML syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise GraphError([f"{source}: YAML syntax error: {exc}"]) from None
    except RecursionError:
        raise GraphError([f"{source}: nested too deeply to read"]) from None


class TooLong:
    """A whole number written with more digits than any field takes (past a float): kept as its length, not read."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __str__(self) -> str:
        return f"a {self.digits:,}-digit number"


def _long_number(text: str) -> TooLong | None:
    """A :class:`TooLong` for a whole number of more than :data:`MAX_DIGITS` digits (0x, 0o and 0b ones too)."""
    body = text.lstrip("+-")
    body = body[2:] if body[:2].lower() in ("0x", "0o", "0b") else body
    digits = sum(char.isalnum() for char in body)  # a YAML 0x number's int() has no limit, its str() has
    return TooLong(digits) if digits > MAX_DIGITS else None


def _json_int(text: str) -> int | TooLong:
    return _long_number(text) or int(text)


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys written more than once (plain JSON keeps the last silently)."""

    repeated: tuple[str, ...] = ()

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        if len(self) != len(pairs):
            counts: dict[str, int] = {}
            for key, _ in pairs:
                counts[key] = counts.get(key, 0) + 1
            self.repeated = tuple(key for key, count in counts.items() if count > 1)


def _json_duplicates(document: Any, source: str) -> None:
    """Every key written twice in one JSON object, named by its path (an explicit stack: no depth limit)."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", document)]
    while stack and len(problems) < MAX_PROBLEMS:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key in getattr(value, "repeated", ()):
                problems.append(f"{source}: {_join(where, key)}: duplicate key {_kind(key)} (write it once)")
            stack.extend((_join(where, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    if problems:
        raise GraphError(problems)


class _TooManyValues(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice in one mapping (the second would silently win).

    It also reads ``{service: stock, path: /stock/{order_id}}`` as written:
    strict YAML ends a plain scalar at ``{`` inside a flow mapping, so a
    route path there would otherwise need quotes.
    """

    def scan_plain(self) -> Any:
        token = super().scan_plain()
        while self.flow_level and token.end_mark.index == self.index:
            found = _FLOW_PLACEHOLDER.match(self.prefix(MAX_NAME_CHARS + 2))
            if found is None:
                break
            self.forward(found.end())
            rest = super().scan_plain()
            value = token.value + found.group() + rest.value
            token = yaml.ScalarToken(value, True, token.start_mark, self.get_mark())
        return token

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Every node is counted as it is read: a file of a million tiny values stops here, early."""
        self.nodes += 1
        if self.nodes > MAX_VALUES:
            raise _TooManyValues(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        """A whole number longer than any field takes is kept as :class:`TooLong` (``int()`` would refuse it)."""
        return _long_number(str(node.value)) or super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def parse_graph(document: Any, source: str, parameters: Mapping[str, float] | None = None) -> Graph:
    """The graph of an already parsed document; :class:`GraphError` listing every problem, nothing half-built."""
    ctx = _Context(source)
    try:
        top = _document(ctx, document)
        if top is None:
            raise GraphError(ctx.problems)
        name = _text(ctx, "name", top.get("name", _MISSING), pattern=_GRAPH_NAME)
        _parameters(ctx, top.get("parameters", {}), parameters or {})
        services = _services(ctx, top.get("services", _MISSING))
        _graph_checks(ctx)
    except _Stop:
        raise GraphError(ctx.problems) from None
    if ctx.problems or name is None or services is None:
        raise GraphError(ctx.problems)
    return Graph(name=name, services=services, parameters=dict(ctx.parameters), source=source)


def _document(ctx: _Context, document: Any) -> dict[str, Any] | None:
    if document is None:
        ctx.add("", "empty document (a graph is a mapping with name and services)")
        return None
    if not isinstance(document, dict):
        ctx.add("", f"the document must be a mapping with name and services (got {_kind(document)})")
        return None
    return _mapping(ctx, "", document, _TOP)


# --- values -----------------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """How a value is named in a message: YAML's words, not Python's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, TooLong):
        return str(value)
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        return "a number past any float"
    if isinstance(value, int) and abs(value) < 10**30:
        return str(value)
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # a YAML date or timestamp


def _number_text(value: float) -> str:
    """``1000000``, ``0.3``, ``1e+30``: whole numbers in full while they are of a sane size."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _keys_text(raw: dict[Any, Any]) -> str:
    """A mapping's first keys for a message, each as plain text."""
    keys = [_printable(str(key)) for key in list(raw)[:4]]
    return ", ".join(keys) + (", ..." if len(raw) > 4 else "")


def _suggest(word: Any, options: Iterable[str]) -> str:
    if len(str(word)) > MAX_PATH_CHARS:  # difflib's time grows with the word's length
        return ""
    found = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _join(where: str, key: Any) -> str:
    """``services[0].name``; a key that is no plain name (empty, a newline, U+202E) as ``services[0]['a\\nb']``."""
    if not isinstance(key, str):
        key = str(key)  # YAML keys may be numbers, booleans or null
    elif not key or not key.isprintable() or len(key) > MAX_NAME_CHARS:
        return f"{where}[{_kind(key)}]"
    return f"{where}.{key}" if where else key


def _mapping(
    ctx: _Context, where: str, raw: Any, keys: tuple[set[str], set[str]], what: str = "a mapping"
) -> dict[str, Any] | None:
    """``raw`` when it is a mapping; each unknown key and each missing required key is a problem of its own."""
    if raw is _MISSING:
        return None
    if not isinstance(raw, dict):
        ctx.add(where, f"must be {what} (got {_kind(raw)})")
        return None
    ctx.spend(where, len(raw))
    required, optional = keys
    allowed = sorted(required | optional)
    for key in raw:
        if key not in allowed:
            hint = _suggest(key, allowed)
            ctx.add(_join(where, key), f"unknown key{hint} (allowed: {', '.join(allowed)})")
    for key in sorted(required - set(raw)):
        ctx.add(_join(where, key), "is required")
    return raw


def _text(
    ctx: _Context,
    where: str,
    raw: Any,
    *,
    max_chars: int = MAX_NAME_CHARS,
    pattern: tuple[re.Pattern[str], str] | None = None,
    empty: bool = False,
) -> str | None:
    """``raw`` when it is a string: non-empty (unless ``empty``), capped, free of control characters, shaped."""
    if raw is _MISSING:
        return None
    problem = _text_problem(raw, max_chars, pattern, empty)
    if problem:
        ctx.add(where, problem)
        return None
    return str(raw)


def _text_problem(raw: Any, max_chars: int, pattern: tuple[re.Pattern[str], str] | None, empty: bool) -> str:
    if not isinstance(raw, str):
        return f"must be a string (got {_kind(raw)})"
    if not raw and not empty:
        return "must not be empty"
    if len(raw) > max_chars:
        return f"must be at most {max_chars} characters (got {len(raw)})"
    bad = next((char for char in raw if unicodedata.category(char) in _CONTROL), None)
    if bad is not None:
        return f"must not contain control characters (found U+{ord(bad):04X})"
    if pattern is not None and not pattern[0].fullmatch(raw):
        return f"must be {pattern[1]} (got {raw!r})"
    return ""


def _choice(ctx: _Context, where: str, raw: Any, choices: tuple[str, ...], fold: Callable[[str], str]) -> str | None:
    if raw is _MISSING:
        return None
    if isinstance(raw, str) and fold(raw) in choices:
        return fold(raw)
    ctx.add(where, f"must be one of {', '.join(choices)} (got {_kind(raw)})")
    return None


def _flag(ctx: _Context, where: str, raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    ctx.add(where, f"must be true or false (got {_kind(raw)})")
    return None


def _number(
    ctx: _Context, where: str, raw: Any, low: float, high: float, *, above: bool = False, whole: bool = False
) -> float | None:
    """A number from ``low`` (excluded when ``above``) to ``high``, a literal or a ``$parameter``; None if bad."""
    if raw is _MISSING:
        return None
    value, origin = _resolve(ctx, where, raw)
    if value is None:
        return None
    problem = _bounds_problem(value, low, high, above, whole)
    if problem:
        ctx.add(where, problem + origin)
        return None
    return value


def _whole(ctx: _Context, where: str, raw: Any, low: int, high: int) -> int | None:
    value = _number(ctx, where, raw, low, high, whole=True)
    return None if value is None else int(value)


def _resolve(ctx: _Context, where: str, raw: Any) -> tuple[float | None, str]:
    """The number ``raw`` stands for, and how it was written when it came from a parameter (for the message)."""
    if isinstance(raw, bool):
        ctx.add(where, f"must be a number, not a boolean ({str(raw).lower()})")
        return None, ""
    if isinstance(raw, TooLong):
        ctx.add(where, f"must be a finite number (got {raw}; no field takes more than {MAX_DIGITS} digits)")
        return None, ""
    if isinstance(raw, int) and abs(raw) > sys.float_info.max:
        ctx.add(where, f"must be a finite number (got {_kind(raw)})")
        return None, ""
    if isinstance(raw, (int, float)):
        return float(raw) + 0.0, ""  # + 0.0: -0 is 0 (a -0 sleep or parameter would print as -0)
    if isinstance(raw, str) and raw.startswith("$"):
        return _parameter(ctx, where, raw[1:]), f" (from {raw})"
    ctx.add(where, f"must be a number or a $parameter (got {_kind(raw)}{_yaml_number_hint(raw)})")
    return None, ""


def _yaml_number_hint(raw: Any) -> str:
    """YAML 1.1 reads ``1e30`` as a string (a float needs a dot and a signed exponent): say so."""
    try:
        number = float(raw) if isinstance(raw, str) else None
    except ValueError:
        return ""
    return "" if number is None else f", a string to YAML: write {number:.1e}"


def _parameter(ctx: _Context, where: str, name: str) -> float | None:
    if name in ctx.parameters:
        return ctx.parameters[name]
    if name not in ctx.broken_parameters:  # a bad declaration is reported once, where it is
        names = sorted({*ctx.parameters, *ctx.broken_parameters})
        ctx.add(where, f"unknown parameter ${name}{_suggest(name, names)} (declared: {', '.join(names) or 'none'})")
    return None


def _bounds_problem(value: float, low: float, high: float, above: bool, whole: bool) -> str:
    if math.isnan(value):
        return "must be a finite number, not NaN"
    if math.isinf(value):
        return f"must be a finite number, not {'-' if value < 0 else ''}infinity"
    kind = "a whole number" if whole else "a number"
    if whole and not value.is_integer():
        return f"must be {kind} (got {_number_text(value)})"
    if above and not low < value <= high:
        return f"must be {kind} above {_number_text(low)} and at most {_number_text(high)} (got {_number_text(value)})"
    if not low <= value <= high:
        upper = "" if math.isinf(high) else f" and at most {_number_text(high)}"
        return f"must be {kind} of at least {_number_text(low)}{upper} (got {_number_text(value)})"
    return ""


def _list(ctx: _Context, where: str, raw: Any, *, low: int, high: int, what: str) -> list[Any] | None:
    if raw is _MISSING:
        return None
    if not isinstance(raw, list):
        ctx.add(where, f"must be a list of {what} (got {_kind(raw)})")
        return None
    if not low <= len(raw) <= high:
        ctx.add(where, f"must be a list of {low} to {high} {what} (got {len(raw)})")
        return None
    ctx.spend(where, len(raw))
    return raw


# --- parameters and services (the first pass) ------------------------------------------------------------------


def _parameters(ctx: _Context, raw: Any, overrides: Mapping[str, float]) -> None:
    """The file's parameters, then the overrides of the declared ones, each checked finite and >= 0."""
    if not isinstance(raw, dict):
        ctx.add("parameters", f"must be a mapping of names to numbers (got {_kind(raw)})")
        return
    ctx.spend("parameters", len(raw))
    for name, value in raw.items():
        where = _join("parameters", name)
        if _text(ctx, where, name, pattern=_PARAMETER) is None:
            continue
        number = _literal(ctx, where, value)
        if name in overrides:
            number = _literal(ctx, f"{where} (override)", overrides[name])
        if number is None:
            ctx.broken_parameters.add(name)
        else:
            ctx.parameters[name] = number


def _literal(ctx: _Context, where: str, raw: Any) -> float | None:
    """A parameter's value: a number itself (a parameter naming another would be a puzzle)."""
    if isinstance(raw, str):
        ctx.add(where, f"must be a number (got {_kind(raw)})")
        return None
    return _number(ctx, where, raw, 0, math.inf)


def _services(ctx: _Context, raw: Any) -> tuple[Service, ...] | None:
    """Two passes: every service's name and route heads first, so that scripts can check their calls against them."""
    items = _list(ctx, "services", raw, low=1, high=MAX_SERVICES, what="services")
    if items is None:
        return None
    ctx.drafts = [_service_head(ctx, f"services[{index}]", item) for index, item in enumerate(items)]
    _unique_services(ctx)
    services = [_service(ctx, draft) for draft in ctx.drafts]
    return None if any(service is None for service in services) else tuple(s for s in services if s)


def _service_head(ctx: _Context, where: str, raw: Any) -> _Draft:
    body = _mapping(ctx, where, raw, _SERVICE) or {}
    name = _text(ctx, f"{where}.name", body.get("name", _MISSING), max_chars=63, pattern=_SERVICE_NAME)
    port = _whole(ctx, f"{where}.port", body["port"], 1, 65535) if "port" in body else None
    prefix = _text(ctx, f"{where}.code_prefix", body["code_prefix"], pattern=_CODE) if "code_prefix" in body else None
    if prefix is None and "code_prefix" not in body and name is not None:
        prefix = name.upper().replace("-", "_")
    capacity = _whole(ctx, f"{where}.capacity", body["capacity"], 1, MAX_CAPACITY) if "capacity" in body else None
    items = _list(ctx, f"{where}.routes", body.get("routes", _MISSING), low=1, high=MAX_ROUTES, what="routes")
    draft = _Draft(where, body.get("name"), name, port, prefix, capacity, [], complete=bool(body) and items is not None)
    for index, item in enumerate(items or []):
        _route_head(ctx, draft, f"{where}.routes[{index}]", item)
    _unique_routes(ctx, draft)
    return draft


def _route_head(ctx: _Context, draft: _Draft, where: str, raw: Any) -> None:
    """A route's path, method, flags and messages: what a call into it and the graph checks need."""
    body = _mapping(ctx, where, raw, _ROUTE)
    if body is None:
        draft.complete = False
        return
    fields: dict[str, Any] = {}
    fields["path"] = _path(ctx, f"{where}.path", body.get("path", _MISSING), reserved=True)
    method = body.get("method", "GET")
    fields["method"] = _choice(ctx, f"{where}.method", method, METHODS, str.upper)
    fields.update(_route_flags(ctx, where, body))
    for key in ("completed", "failed"):
        if key in body:
            fields[key] = _text(ctx, f"{where}.{key}", body[key], max_chars=MAX_MESSAGE_CHARS)
    if "slow_code" in body:
        fields["slow_code"] = _text(ctx, f"{where}.slow_code", body["slow_code"], pattern=_CODE)
    draft.complete = draft.complete and fields["path"] is not None and fields["method"] is not None
    draft.routes.append((where, fields, body))


def _route_flags(ctx: _Context, where: str, body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"entry": _flag(ctx, f"{where}.entry", body["entry"]) if "entry" in body else False}
    if "weight" in body:
        fields["weight"] = _number(ctx, f"{where}.weight", body["weight"], 0, MAX_WEIGHT, above=True)
        if fields["entry"] is False:
            ctx.add(f"{where}.weight", "only an entry route has a weight (add entry: true, or drop weight)")
    return fields


def _path(ctx: _Context, where: str, raw: Any, *, reserved: bool, key: str | None = None) -> str | None:
    """``/buy/{order_id}``: segments of plain characters, exactly one of them a whole ``{placeholder}``."""
    path = _text(ctx, where, raw, max_chars=MAX_PATH_CHARS)
    if path is None:
        return None
    problem = _path_problem(path, reserved, key)
    if problem:
        ctx.add(where, problem)
        return None
    return path


def _path_problem(path: str, reserved: bool, key: str | None) -> str:
    if not path.startswith("/"):
        return f"must start with / (got {path!r})"
    segments = path[1:].split("/")
    keys = [segment for segment in segments if "{" in segment or "}" in segment]
    if len(keys) != 1:
        return f"must hold exactly one {{placeholder}}, the request's key, like /buy/{{order_id}} (got {path!r})"
    found = _KEY_SEGMENT.fullmatch(keys[0])
    if found is None:
        return f"the placeholder must be a whole segment like {{order_id}} (got {keys[0]!r})"
    normalised = _normalised_segment(path, segments)
    if normalised:
        return normalised
    if any(segment != keys[0] and not _SEGMENT.fullmatch(segment) for segment in segments):
        return f"each segment must be letters, digits or ._~- (got {path!r})"
    if found.group(1) == "trace_id":
        return "the key must not be trace_id (templates use {trace_id} for the trace)"
    if reserved and (path.startswith("/chaos") or any(path.startswith(f"{name}/") for name in RESERVED_PATHS)):
        return f"{path} is reserved: every service serves {', '.join(RESERVED_PATHS)} and /chaos itself"
    if key is not None and found.group(1) != key:
        return f"the placeholder must be the route's key {{{key}}} (got {keys[0]})"
    return ""


def _normalised_segment(path: str, segments: list[str]) -> str:
    """A segment an HTTP client or server rewrites (yarl drops ``.`` and ``..``): the request would miss the route."""
    for segment in segments:
        if segment in (".", ".."):
            return (
                f"must not hold a {segment!r} segment (got {path!r}): the HTTP client resolves it away "
                "and the request misses the route; remove it"
            )
        if not segment:
            return f"must not hold an empty segment (got {path!r}): remove the extra / (// or a trailing /)"
        if "%" in segment:
            return f"must not hold %-escapes (got {path!r}): use letters, digits or ._~- as they are"
    return ""


def _shape(method: str, path: str) -> tuple[str, ...]:
    """A route as a router sees it: the placeholder's name does not tell two routes apart."""
    return (method, *("{}" if _KEY_SEGMENT.fullmatch(part) else part for part in path.split("/")))


def _unique_routes(ctx: _Context, draft: _Draft) -> None:
    seen: dict[tuple[str, ...], str] = {}
    for where, fields, _ in draft.routes:
        if fields["path"] is None or fields["method"] is None:
            continue
        shape = _shape(fields["method"], fields["path"])
        if shape in seen:
            ctx.add(where, f"duplicate route {fields['method']} {fields['path']} (also {seen[shape]})")
        seen.setdefault(shape, where.rsplit(".", 1)[1])


def _unique_services(ctx: _Context) -> None:
    """Names, ports and code prefixes each belong to one service (a prefix names its PORT and URL settings)."""
    repeated: set[str] = set()
    for attribute, label in (("name", "name"), ("port", "port"), ("code_prefix", "code prefix")):
        seen: dict[Any, str] = {}
        for draft in ctx.drafts:
            value = getattr(draft, attribute)
            if value is None or (attribute == "code_prefix" and draft.where in repeated):
                continue  # a repeated name repeats its derived prefix: one problem, not two
            if value in seen:
                ctx.add(f"{draft.where}.{attribute}", f"duplicate {label} {value!r} (also {seen[value]})")
                repeated.add(draft.where)
            seen.setdefault(value, draft.where)


# --- scripts (the second pass) ---------------------------------------------------------------------------------


def _service(ctx: _Context, draft: _Draft) -> Service | None:
    routes = [_route(ctx, draft, where, fields, body) for where, fields, body in draft.routes]
    if draft.name is None or draft.code_prefix is None or not routes or None in routes:
        return None
    return Service(
        draft.name,
        tuple(r for r in routes if r),
        port=draft.port,
        code_prefix=draft.code_prefix,
        capacity=draft.capacity,
    )


def _route(ctx: _Context, draft: _Draft, where: str, fields: dict[str, Any], body: dict[str, Any]) -> Route | None:
    """The route's script and response; read even when its head is bad, so that their problems are reported too."""
    path, method = fields["path"], fields["method"]
    service = draft.name or (draft.raw_name if isinstance(draft.raw_name, str) else draft.where)
    good_head = path is not None and method is not None and draft.name is not None
    ctx.unresolved = ctx.unresolved or not good_head
    node = (service, f"{method} {path}" if good_head else where)
    scope = _Scope(service, node, placeholders(path)[0] if path else None, where)
    script = _script(ctx, f"{where}.script", body.get("script", _MISSING), scope, depth=1)
    response = _response(ctx, f"{where}.response", body["response"], scope) if "response" in body else None
    if not good_head or None in fields.values() or script is None or (response is None and "response" in body):
        return None
    return Route(script=script, response=response, **fields)


def _script(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> tuple[Step, ...] | None:
    items = _list(ctx, where, raw, low=0, high=MAX_STEPS, what="steps")
    if items is None:
        return None
    if depth > MAX_DEPTH:
        ctx.add(where, f"nested too deeply (at most {MAX_DEPTH} levels of scripts in spans and parallels)")
        return None
    steps = [_step(ctx, f"{where}[{index}]", item, scope, depth, _STEPS) for index, item in enumerate(items)]
    return None if None in steps else tuple(step for step in steps if step is not None)


def _step(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int, kinds: tuple[str, ...]) -> Step | None:
    """One step: a mapping of one key, the step's kind, to its body."""
    ctx.steps += 1
    if ctx.steps == MAX_STEPS + 1:
        ctx.add(where, f"too many steps (at most {MAX_STEPS} in a graph)")
    if ctx.steps > MAX_STEPS:
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        got = f"keys {_keys_text(raw)}" if isinstance(raw, dict) and raw else _kind(raw)
        ctx.add(where, f"a step is a mapping of one key, one of {', '.join(kinds)} (got {got})")
        return None
    kind, body = next(iter(raw.items()))
    if kind not in kinds:
        allowed = f"one of {', '.join(kinds)}"
        what = "not allowed in a parallel" if kind in _STEPS else f"unknown step{_suggest(kind, kinds)}"
        ctx.add(_join(where, kind), f"{what} ({allowed})")
        return None
    return _STEP_READERS[kind](ctx, f"{where}.{kind}", body, scope, depth)


def _sleep(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> Sleep | None:
    """``ms: 5`` is Sleep(5, 5); ``ms: [20, 50]`` a uniform range."""
    body = _mapping(ctx, where, raw, _SLEEP)
    if body is None or "ms" not in body:
        return None
    ms = body["ms"]
    if not isinstance(ms, list):
        value = _number(ctx, f"{where}.ms", ms, 0, MAX_SLEEP_MS)
        return None if value is None else Sleep(value, value)
    if len(ms) != 2:
        ctx.add(f"{where}.ms", f"a range is [low, high] (got {len(ms)} numbers)")
        return None
    low, high = (_number(ctx, f"{where}.ms[{index}]", value, 0, MAX_SLEEP_MS) for index, value in enumerate(ms))
    if low is None or high is None:
        return None
    if high < low:
        ctx.add(f"{where}.ms", f"high must be at least low (got [{_number_text(low)}, {_number_text(high)}])")
        return None
    return Sleep(low, high)


def _log(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> Log | None:
    body = _mapping(ctx, where, raw, _LOG)
    if body is None:
        return None
    level = _choice(ctx, f"{where}.level", body.get("level", _MISSING), LOG_LEVELS, str.lower)
    message = _text(ctx, f"{where}.message", body.get("message", _MISSING), max_chars=MAX_MESSAGE_CHARS)
    return None if level is None or message is None else Log(level, message)


def _call(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> Call | None:
    """A request to another service; its path must reach one of the callee's routes, with the caller's key."""
    index = scope.calls
    scope.calls += 1
    scope.first_call = scope.first_call or where
    body = _mapping(ctx, where, raw, _CALL)
    if body is None:
        return None
    callee = _callee(ctx, f"{where}.service", body.get("service", _MISSING), scope)
    path = _path(ctx, f"{where}.path", body.get("path", _MISSING), reserved=False, key=scope.key)
    method = _choice(ctx, f"{where}.method", body["method"], METHODS, str.upper) if "method" in body else None
    timeout_s = _number(ctx, f"{where}.timeout_s", body.get("timeout_s", _MISSING), MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    on_error = _choice(ctx, f"{where}.on_error", body.get("on_error", "fail"), ON_ERROR, str.lower)
    errors = _errors(ctx, f"{where}.errors", body["errors"]) if "errors" in body else {}
    if callee is None:
        return None
    target = None if path is None else _target(ctx, f"{where}.path", callee, path, method, scope)
    if target is None:
        ctx.attempted.setdefault(scope.node, set()).add(callee.name or "")  # reached all the same: no echo problem
        return None
    ctx.edges.setdefault(scope.node, []).append(((callee.name or "", f"{target[0]} {target[1]}"), where))
    if path is None or ("method" in body and method is None) or timeout_s is None or on_error is None or errors is None:
        return None
    fallback: Literal["fail", "ignore"] = "ignore" if on_error == "ignore" else "fail"
    return Call(callee.name or "", path, target[0], target[1], timeout_s, fallback, errors, index)


def _callee(ctx: _Context, where: str, raw: Any, scope: _Scope) -> _Draft | None:
    name = _text(ctx, where, raw, max_chars=MAX_NAME_CHARS)
    if name is None:
        ctx.unresolved = True  # the callee is unknown: whether the others are reached is guesswork
        return None
    if name == scope.service:
        ctx.add(where.rsplit(".", 1)[0], f"cycle {name} -> {name} (a service calling itself)")
        return None
    draft = ctx.draft(name)
    if draft is None:
        ctx.unresolved = True
        if not any(other.raw_name == name for other in ctx.drafts):  # a service whose name was refused
            names = [other.name for other in ctx.drafts if other.name]
            ctx.add(where, f"no service named {name!r}{_suggest(name, names)}")
        return None
    scope.called.append(name)
    return draft


def _target(
    ctx: _Context, where: str, callee: _Draft, path: str, method: str | None, scope: _Scope
) -> tuple[str, str] | None:
    """(method, callee route path) the call reaches: segment by segment, placeholder on placeholder."""
    shape = _shape("", path)[1:]
    found = [(f["method"], f["path"]) for _, f, _ in callee.routes if f["path"] and _shape("", f["path"])[1:] == shape]
    by_method = dict(reversed(found))  # a duplicate route is reported as such, the first one counts
    matching = [(verb, route) for verb, route in by_method.items() if method in (None, verb)]
    if len(matching) == 1:
        return matching[0]
    if len(matching) > 1:
        ctx.add(where, f"{callee.name} serves {path} by {', '.join(m for m, _ in matching)}: set method")
    elif callee.complete:
        serves = ", ".join(f"{f['method']} {f['path']}" for _, f, _ in callee.routes)
        ctx.add(where, f"no route '{method or 'GET'} {path}' on {callee.name} (it serves {serves})")
    return None


def _errors(ctx: _Context, where: str, raw: Any) -> dict[str, Failure] | None:
    """How the hop answers when the call fails: by reason (timeout, connection, status) or for ``any``."""
    body = _mapping(ctx, where, raw, (set(), set(FAILURE_KEYS)))
    if body is None:
        return None
    out = {key: _failure(ctx, f"{where}.{key}", value) for key, value in body.items() if key in FAILURE_KEYS}
    complete = len(out) == len(body) and None not in out.values()
    return {key: value for key, value in out.items() if value is not None} if complete else None


def _failure(ctx: _Context, where: str, raw: Any) -> Failure | None:
    body = _mapping(ctx, where, raw, _FAILURE)
    if body is None:
        return None
    status = _whole(ctx, f"{where}.status", body.get("status", _MISSING), 400, 599)
    code = _text(ctx, f"{where}.error_code", body["error_code"], pattern=_CODE) if "error_code" in body else None
    message = (
        _text(ctx, f"{where}.message", body["message"], max_chars=MAX_MESSAGE_CHARS) if "message" in body else None
    )
    if status is None or (code is None and "error_code" in body) or (message is None and "message" in body):
        return None
    return Failure(status, code, message)


def _parallel(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> Parallel | None:
    items = _list(ctx, where, raw, low=2, high=MAX_STEPS, what="steps (calls, spans or parallels)")
    if items is None:
        return None
    if depth + 1 > MAX_DEPTH:
        ctx.add(where, f"nested too deeply (at most {MAX_DEPTH} levels of scripts in spans and parallels)")
        return None
    steps = [_step(ctx, f"{where}[{i}]", item, scope, depth + 1, _BRANCHES) for i, item in enumerate(items)]
    return None if None in steps else Parallel(tuple(step for step in steps if step is not None))


def _span(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> Span | None:
    body = _mapping(ctx, where, raw, _SPAN)
    if body is None:
        return None
    name = _text(ctx, f"{where}.name", body.get("name", _MISSING))
    attributes = _attributes(ctx, f"{where}.attributes", body.get("attributes", {}), scope)
    steps = _script(ctx, f"{where}.script", body.get("script", _MISSING), scope, depth + 1)
    return None if name is None or attributes is None or steps is None else Span(name, attributes, steps)


def _attributes(ctx: _Context, where: str, raw: Any, scope: _Scope) -> dict[str, Any] | None:
    return _named_values(ctx, where, raw, scope, _attribute, "names to strings, numbers or booleans")


def _named_values(
    ctx: _Context,
    where: str,
    raw: Any,
    scope: _Scope,
    read: Callable[[_Context, str, Any, _Scope], Any],
    what: str,
) -> dict[str, Any] | None:
    """A mapping whose keys are names and whose values ``read`` checks (span attributes, a response's fields)."""
    if not isinstance(raw, dict):
        ctx.add(where, f"must be a mapping of {what} (got {_kind(raw)})")
        return None
    ctx.spend(where, len(raw))
    out = {}
    for key, value in raw.items():
        name = _text(ctx, _join(where, key), key)
        if name is not None:
            out[name] = read(ctx, _join(where, key), value, scope)
    return out if len(out) == len(raw) and _MISSING not in out.values() else None


def _attribute(ctx: _Context, where: str, raw: Any, scope: _Scope) -> Any:
    if isinstance(raw, str):
        return _template(ctx, where, raw, scope.key)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and not -MAX_ATTRIBUTE_INT <= raw < MAX_ATTRIBUTE_INT:
        ctx.add(where, f"a whole number must fit in 64 bits, -2**63 to 2**63-1 (got {_kind(raw)})")
        return _MISSING
    if isinstance(raw, (int, float, TooLong)):
        return raw if _number(ctx, where, raw, -math.inf, math.inf) is not None else _MISSING
    ctx.add(where, f"must be a string, a number or a boolean (got {_kind(raw)})")
    return _MISSING


def _template(ctx: _Context, where: str, raw: str, key: str | None) -> Any:
    """A string whose placeholders are the route's key and the trace id; ``_MISSING`` if it is bad."""
    text = _text(ctx, where, raw, max_chars=MAX_MESSAGE_CHARS, empty=True)
    if text is None:
        return _MISSING
    unknown = [name for name in placeholders(text) if name not in (key, "trace_id")]
    if unknown and key is not None:
        ctx.add(where, f"unknown placeholder {{{unknown[0]}}} (a template may use {{{key}}} and {{trace_id}})")
        return _MISSING
    return text


def _scenario_order(ctx: _Context, where: str, scope: _Scope) -> None:
    """A scenario fault before every call: the truth replays scenario faults at the start of a hop."""
    if scope.first_call is not None:
        first = scope.first_call.removeprefix(f"{scope.where}.")
        ctx.add(where, f"must come before every call of the route (the first is {first}): scenario faults start a hop")


def _fail_if(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> FailIf | None:
    _scenario_order(ctx, where, scope)
    body = _mapping(ctx, where, raw, _FAIL_IF)
    if body is None:
        return None
    key = _text(ctx, f"{where}.key_contains", body.get("key_contains", _MISSING))
    status = _whole(ctx, f"{where}.status", body.get("status", _MISSING), 400, 599)
    exception = _text(ctx, f"{where}.exception", body.get("exception", _MISSING), pattern=_EXCEPTION)
    if exception is not None and (problem := exception_problem(exception)) is not None:
        ctx.add(f"{where}.exception", problem)
        exception = None
    message = _text(ctx, f"{where}.message", body.get("message", _MISSING), max_chars=MAX_MESSAGE_CHARS)
    code = _text(ctx, f"{where}.error_code", body["error_code"], pattern=_CODE) if "error_code" in body else None
    if key is None or status is None or exception is None or message is None or scope.first_call is not None:
        return None
    return None if code is None and "error_code" in body else FailIf(key, status, exception, message, code)


def _hang_if(ctx: _Context, where: str, raw: Any, scope: _Scope, depth: int) -> HangIf | None:
    _scenario_order(ctx, where, scope)
    body = _mapping(ctx, where, raw, _HANG_IF)
    if body is None:
        return None
    key = _text(ctx, f"{where}.key_contains", body.get("key_contains", _MISSING))
    seconds = _number(ctx, f"{where}.s", body.get("s", _MISSING), 0, MAX_HANG_S)
    detail = _text(ctx, f"{where}.detail", body.get("detail", "hangs"), max_chars=MAX_MESSAGE_CHARS)
    if key is None or seconds is None or detail is None or scope.first_call is not None:
        return None
    return HangIf(key, seconds, detail)


_STEP_READERS: dict[str, Callable[[_Context, str, Any, _Scope, int], Step | None]] = {
    "sleep": _sleep,
    "log": _log,
    "call": _call,
    "parallel": _parallel,
    "fail_if": _fail_if,
    "hang_if": _hang_if,
    "span": _span,
}
_STEPS = tuple(_STEP_READERS)
_BRANCHES = ("call", "span", "parallel")


# --- responses -------------------------------------------------------------------------------------------------


def _response(ctx: _Context, where: str, raw: Any, scope: _Scope) -> dict[str, Any] | None:
    return _named_values(ctx, where, raw, scope, _response_value, "field names to values")


def _response_value(ctx: _Context, where: str, raw: Any, scope: _Scope) -> Any:
    """A template, a literal, ``{from_call, field}`` or ``{key_flag: {false_one_in}}``; ``_MISSING`` if bad."""
    if raw is None or isinstance(raw, (str, bool, int, float, TooLong)):
        return _attribute(ctx, where, raw, scope) if raw is not None else None
    if isinstance(raw, dict) and "from_call" in raw:
        return _from_call(ctx, where, raw, scope)
    if isinstance(raw, dict) and "key_flag" in raw:
        return _key_flag(ctx, where, raw)
    ctx.add(
        where,
        "must be a string template, a number, a boolean, null, {from_call: SERVICE, field: NAME} "
        f"or {{key_flag: {{false_one_in: N}}}} (got {_kind(raw)})",
    )
    return _MISSING


def _from_call(ctx: _Context, where: str, raw: dict[str, Any], scope: _Scope) -> Any:
    _mapping(ctx, where, raw, _FROM_CALL)
    service = _text(ctx, f"{where}.from_call", raw["from_call"])
    name = _text(ctx, f"{where}.field", raw.get("field", _MISSING))
    if service is not None and service not in scope.called:
        calls = ", ".join(dict.fromkeys(scope.called)) or "none"
        ctx.add(f"{where}.from_call", f"must name a service this route calls (it calls: {calls}; got {service!r})")
        return _MISSING
    return (
        _MISSING if service is None or name is None or set(raw) != {"from_call", "field"} else FromCall(service, name)
    )


def _key_flag(ctx: _Context, where: str, raw: dict[str, Any]) -> Any:
    if set(raw) != {"key_flag"}:
        _mapping(ctx, where, raw, ({"key_flag"}, set()))
        return _MISSING
    body = _mapping(ctx, f"{where}.key_flag", raw["key_flag"], _KEY_FLAG)
    if body is None:
        return _MISSING
    n = _whole(ctx, f"{where}.key_flag.false_one_in", body.get("false_one_in", _MISSING), 2, MAX_FALSE_ONE_IN)
    return _MISSING if n is None or len(body) != 1 else KeyFlag(n)


# --- the graph as a whole ---------------------------------------------------------------------------------------


def _graph_checks(ctx: _Context) -> None:
    """One edge service holding the entry routes, no call cycles, every other service reached from an entry."""
    if not ctx.drafts:
        return
    entries = [(draft, f) for draft in ctx.drafts for _, f, _ in draft.routes if f.get("entry")]
    edges = {draft.name or draft.where for draft, _ in entries}
    if not entries:
        ctx.add("services", "no entry route (mark the routes the traffic generator sends to with entry: true)")
    elif len(edges) > 1:
        named = "; ".join(f"{d.name or d.where}: {f['method']} {f['path']}" for d, f in entries)
        ctx.add("services", f"entry routes on more than one service ({named}); they all belong to one edge service")
    _cycles(ctx)
    if len(edges) == 1 and not ctx.unresolved:
        _unreachable(ctx, [(d.name or "", f"{f['method']} {f['path']}") for d, f in entries], edges.pop())


def _cycles(ctx: _Context) -> None:
    """For each service, the shortest call path from one of its routes back to it (a breadth-first search)."""
    seen: set[frozenset[str]] = set()
    for draft in ctx.drafts:
        found = _cycle_from(ctx, draft.name) if draft.name else None
        if found is None:
            continue
        wheres = frozenset(where for _, where in found)
        if wheres not in seen:
            seen.add(wheres)
            names = [draft.name or "", *(node[0] for node, _ in found)]
            ctx.add(found[-1][1], f"cycle {' -> '.join(names)}")


def _cycle_from(ctx: _Context, service: str) -> list[tuple[Node, str]] | None:
    """The calls (callee, where) of a shortest path from a route of ``service`` back to ``service``, or None."""
    queue = deque(node for node in ctx.edges if node[0] == service)
    parents: dict[Node, tuple[Node, str] | None] = {node: None for node in queue}
    while queue:
        node = queue.popleft()
        for callee, where in ctx.edges.get(node, []):
            if callee[0] == service:
                return [*_path_to(parents, node), (callee, where)]
            if callee not in parents:
                parents[callee] = (node, where)
                queue.append(callee)
    return None


def _path_to(parents: dict[Node, tuple[Node, str] | None], node: Node) -> list[tuple[Node, str]]:
    steps: list[tuple[Node, str]] = []
    while (parent := parents[node]) is not None:
        steps.append((node, parent[1]))
        node = parent[0]
    return steps[::-1]


def _unreachable(ctx: _Context, entries: list[Node], edge: str) -> None:
    """A service no call path from an entry route reaches would never serve (a call that failed to resolve counts)."""
    reached = {node[0] for node in entries}
    queue, visited = deque(entries), set(entries)
    while queue:
        node = queue.popleft()
        reached.update(ctx.attempted.get(node, set()))
        for callee, _ in ctx.edges.get(node, []):
            reached.add(callee[0])
            if callee not in visited:
                visited.add(callee)
                queue.append(callee)
    for draft in ctx.drafts:
        if draft.name and draft.name != edge and draft.name not in reached:
            ctx.add(draft.where, f"{draft.name} is never called from an entry route")
