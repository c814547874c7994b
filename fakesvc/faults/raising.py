"""Raise an exception that the graph or a fault rule names as data, with a traceback that reads as real code."""

from __future__ import annotations

import builtins
import functools
import keyword
import linecache
from collections.abc import Callable
from typing import Any, NoReturn


def exception_type(name: str) -> type[Exception]:
    """The builtin exception called ``name``, or a new one of that name (``PoolExhausted``)."""
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return type(name, (RuntimeError,), {})


def is_exception_name(name: str) -> bool:
    """``ValueError`` or ``PoolExhausted``: an identifier that is not a keyword (``raise class(...)`` is no code)."""
    return name.isidentifier() and not keyword.iskeyword(name)


@functools.cache
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
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - a fixed template around an identifier
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    raise_it: Callable[[str], NoReturn] = namespace[f"raise_{name}"]
    return raise_it
