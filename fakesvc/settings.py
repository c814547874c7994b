"""Declarative settings: one environment variable and one ``--kebab-case`` flag each.

A flag beats the environment, the environment beats the default, and a bad
value raises :class:`ConfigError` naming the setting, so an entry point can
stop with one clear line instead of a traceback (SPEC section 10).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the program cannot run with."""


@dataclass(frozen=True)
class Setting:
    """One knob: its environment variable, its flag, its default and its parser.

    ``shown`` is the default as ``--help`` words it when the value itself says
    little (None standing for "random", or for a URL built from other settings).
    ``aliases`` are older flags an entry point keeps accepting.
    """

    env: str
    flag: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    shown: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        """The help, then the env variable, the allowed values and the default, as a user would type them."""
        notes = [f"env {self.env}"]
        if isinstance(self.parse, (Choice, CommaSet, Switch)):
            notes.append(self.parse.describe())
        notes.append(f"default {self.shown if self.shown is not None else _typed(self.default)}")
        return f"{self.help} ({'; '.join(notes)})".replace("%", "%%")  # argparse formats help with %


def _typed(value: Any) -> str:
    """A default written the way the flag would take it: ``logs,metrics``, not ``frozenset({...})``."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, frozenset | set):
        return ",".join(sorted(value)) or '"" (none)'
    if value == "":
        return '"" (empty)'
    return str(value)


def add_settings(parser: argparse.ArgumentParser, settings: Iterable[Setting]) -> None:
    """Declare each setting as a string flag (an on/off one may stand alone); parsing happens in :func:`resolve`."""
    for setting in settings:
        alone_means_on = isinstance(setting.parse, Switch)
        parser.add_argument(
            setting.flag,
            *setting.aliases,
            dest=setting.dest,
            default=None,
            metavar=setting.env,
            help=setting.help_text(),
            nargs="?" if alone_means_on else None,
            const="on" if alone_means_on else None,
        )


def resolve(
    settings: Iterable[Setting],
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return ``{dest: value}`` with flag > environment > default precedence."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in settings:
        raw = getattr(args, setting.dest, None) if args is not None else None
        source = setting.flag
        if raw is None:
            raw = environ.get(setting.env)
            source = setting.env
        if raw is None:
            values[setting.dest] = setting.default
            continue
        try:
            values[setting.dest] = setting.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc} (got {raw!r})") from None
    return values


# Parsers: each raises ValueError with a short reason the user can act on.


def _ascii(raw: str) -> str:
    """Python's int() and float() take any script's digits ("\u0661" is 1): settings take ASCII ones."""
    if not raw.isascii():
        raise ValueError("must be written with ASCII digits")
    return raw


def non_negative_float(raw: str) -> float:
    try:
        value = float(_ascii(raw))
    except ValueError:
        raise ValueError("must be a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def positive_float(raw: str) -> float:
    value = non_negative_float(raw)
    if value == 0:
        raise ValueError("must be a number > 0")
    return value


def optional_positive_float(raw: str) -> float | None:
    """Empty means unset (no bound)."""
    return None if raw.strip() == "" else positive_float(raw)


def port(raw: str) -> int:
    try:
        value = int(_ascii(raw))
    except ValueError:
        raise ValueError("must be a port number") from None
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number between 0 and 65535")
    return value


def positive_int(raw: str) -> int:
    try:
        value = int(_ascii(raw))
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value <= 0:
        raise ValueError("must be a whole number > 0")
    return value


def optional_int(raw: str) -> int | None:
    if raw.strip() == "":
        return None
    try:
        return int(_ascii(raw))
    except ValueError:
        raise ValueError("must be a whole number") from None


def http_url(raw: str) -> str:
    from yarl import URL

    url = URL(raw.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    return str(url).rstrip("/")


@dataclass(frozen=True)
class Choice:
    """A parser taking one of ``allowed`` (any case); ``--help`` lists them."""

    allowed: tuple[str, ...]

    def __call__(self, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.allowed:
            raise ValueError(f"must be one of {', '.join(self.allowed)}")
        return value

    def describe(self) -> str:
        return f"one of {', '.join(self.allowed)}"


@dataclass(frozen=True)
class CommaSet:
    """A parser taking a comma list of ``allowed`` items (empty: none); ``--help`` lists them."""

    allowed: tuple[str, ...]

    def __call__(self, raw: str) -> frozenset[str]:
        items = frozenset(item.strip().lower() for item in raw.split(",") if item.strip())
        unknown = sorted(items - set(self.allowed))
        if unknown:
            raise ValueError(f"unknown item {unknown[0]!r}; allowed: {', '.join(self.allowed)}")
        return items

    def describe(self) -> str:
        return f"comma list of {', '.join(self.allowed)}"


_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class Switch:
    """A parser for an on/off setting: the flag alone turns it on, the environment says 1/0, true/false, ..."""

    def __call__(self, raw: str) -> bool:
        value = raw.strip().lower()
        if value not in _ON + _OFF:
            raise ValueError("must be on or off (or 1/0, true/false, yes/no)")
        return value in _ON

    def describe(self) -> str:
        return "on when the flag stands alone; or on/off, 1/0, true/false"


switch = Switch()


def choice(*allowed: str) -> Choice:
    return Choice(allowed)


def comma_set(*allowed: str) -> CommaSet:
    return CommaSet(allowed)


def text(raw: str) -> str:
    return raw


def non_empty_text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw
