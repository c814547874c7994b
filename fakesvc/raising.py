"""Raise an exception that the graph or a fault rule names as data, with a traceback that reads as real code."""

from __future__ import annotations

import builtins
import functools
import keyword
import linecache
import re
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # ASCII: Python folds other identifiers (NFKC), so "ﬁ" would be "fi"
_PROBE = "probe"


def _needs_more_than_a_message(cls: type[BaseException]) -> bool:
    try:
        cls(_PROBE)
    except TypeError:
        return True
    return False


# The builtin exception classes that cannot be made from one message (ExceptionGroup wants a list of exceptions,
# UnicodeDecodeError five arguments): found by trying each, so a new Python's additions are found too.
NEEDS_MORE_THAN_A_MESSAGE: tuple[str, ...] = tuple(
    sorted(
        name
        for name, found in vars(builtins).items()
        if isinstance(found, type) and issubclass(found, BaseException) and _needs_more_than_a_message(found)
    )
)
ALLOWED = (
    "any other builtin exception (ValueError, TimeoutError, ConnectionError, ...) "
    "or a name of your own like PoolExhausted (raised as a RuntimeError of that name)"
)


def exception_type(name: str) -> type[Exception]:
    """The builtin exception called ``name``, or a new one of that name (``PoolExhausted``)."""
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return type(name, (RuntimeError,), {})


def is_exception_name(name: str) -> bool:
    """``ValueError`` or ``PoolExhausted``: an ASCII identifier that is not a keyword (``raise class(...)`` is no code)."""
    return _NAME.fullmatch(name) is not None and not keyword.iskeyword(name)


def exception_problem(name: str) -> str | None:
    """Why a rule cannot raise an exception called ``name`` with its message; None when it can.

    Tried, not guessed: the raising function is built and called once (it is
    cached, so the rule's faults use the same one), and must raise an exception
    of that name (or the builtin it names: ``IOError`` is ``OSError``) carrying
    the message (``message`` or ``__debug__`` would not).
    """
    if not is_exception_name(name):
        return "must be an exception class name: ASCII letters, digits and _, not a Python keyword (like ValueError)"
    if name in NEEDS_MORE_THAN_A_MESSAGE:
        return (
            f"{name} cannot be raised with one message (refused: {', '.join(NEEDS_MORE_THAN_A_MESSAGE)}); "
            f"allowed: {ALLOWED}"
        )
    try:
        raiser(name)(_PROBE)
    except Exception as exc:
        raised = type(exc).__name__ == name or type(exc) is getattr(builtins, name, None)  # IOError is OSError
        if raised and _PROBE in str(exc):
            return None
        return f"{name} cannot name the exception here (raising it gives {type(exc).__name__}); allowed: {ALLOWED}"
    return None  # pragma: no cover - raiser always raises


@functools.lru_cache(maxsize=1024)  # bounded: rules may name anything
def raiser(name: str) -> Callable[[str], NoReturn]:
    """A function raising the exception called ``name``: its traceback ends in ``raise ValueError(message)``.

    An analyser reads the traceback of an error log; it should show the
    ``raise`` a real service would have, not an interpreter's generic line.
    So the raising line is compiled from a fixed template around ``name``
    (an identifier, checked here) and registered with :mod:`linecache`, which
    is where :mod:`traceback` finds the text it quotes.
    """
    if not is_exception_name(name):
        raise ValueError(f"not an exception name: {name!r}")
    filename = f"<fakesvc raise {name}>"
    source = f"def raise_{name}(message):\n    raise {name}(message)\n"
    namespace: dict[str, Any] = {name: exception_type(name)}
    with warnings.catch_warnings():  # `raise __debug__(message)` is a SyntaxWarning: make it the error it is
        warnings.simplefilter("error", SyntaxWarning)
        code = compile(source, filename, "exec")
    exec(code, namespace)  # noqa: S102 - a fixed template around an identifier
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    raise_it: Callable[[str], NoReturn] = namespace[f"raise_{name}"]
    return raise_it
