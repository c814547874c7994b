"""``python -m fakesvc.healthcheck``: the container's HEALTHCHECK, asking the process's own health route.

One image runs several commands (the supervisor, a service, the sink, the traffic
generator). The probe learns which from its argument or, by default, from the
container's command line (``/proc/1/cmdline``), and reads the port from the same
settings that command reads (its flags, then the environment, then the default),
so a moved port is followed rather than guessed. Exit 0: healthy; 1: not; 2: bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fakesvc import settings
from fakesvc.config import SERVICE_SETTINGS, service_config
from fakesvc.graph.placement import graph_of, port_of
from fakesvc.settings import ConfigError, Setting
from fakesvc.sink_address import STANDALONE_ADDRESS

SERVICE_ROUTE = "/readyz"
SINK_ROUTE = "/ingest/health"
# The module (python -m ...) or script each role runs as, in the image and in compose/k8s commands.
ENTRY_POINTS = {
    "service": "fakesvc.service",
    "gateway": "fakesvc.gateway",
    "payment": "fakesvc.payment",
    "inventory": "fakesvc.inventory",
    "sink": "fakesvc.sink",
    "traffic": "fakesvc.traffic",
    "supervisor": "supervisor.py",
}
ROLES = tuple(ENTRY_POINTS)
CHECKOUT_ROLES = {"gateway": "api-gateway", "payment": "payment-service", "inventory": "inventory-service"}
_ANY_ADDRESS = {"", "0.0.0.0", "::"}  # bound to every address: reached on loopback
TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Command:
    """What the container runs: its role and the arguments after the module or script."""

    role: str
    args: tuple[str, ...] = ()


def command_of(argv: Sequence[str]) -> Command:
    """The role of a command line such as ``python -m fakesvc.payment --payment-port 9000``.

    The module or script may come after a wrapper (``tini --``, ``docker-init``).
    """
    for index, arg in enumerate(argv):
        for role, entry in ENTRY_POINTS.items():
            if entry.endswith(".py") and Path(arg).name == entry:
                return Command(role, tuple(argv[index + 1 :]))
            if arg == "-m" and index + 1 < len(argv) and argv[index + 1] == entry:
                return Command(role, tuple(argv[index + 2 :]))
    raise ConfigError(f"the command line runs no fakesvc entry point; name a role ({', '.join(ROLES)})")


def container_command(cmdline: Path = Path("/proc/1/cmdline")) -> Command:
    """The command of the container's first process."""
    try:
        raw = cmdline.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {cmdline} ({exc.strerror}); name a role ({', '.join(ROLES)})") from None
    return command_of([part.decode("utf-8", "replace") for part in raw.split(b"\0") if part])


def _flags(declared: Sequence[Setting], args: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The flags of ``declared`` in a command's arguments, and the rest (a service's name, other flags)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # as the command's own parser reads it
    settings.add_settings(parser, declared)
    return parser.parse_known_args(list(args))


def _loopback(host: str) -> str:
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    return f"[{host}]" if ":" in host else host


def _services(command: Command, rest: Sequence[str], names: Sequence[str]) -> list[str]:
    """The services a command runs: the graph's all (supervisor), one by role, or the one it names (default: the first)."""
    if command.role == "supervisor":
        return list(names)
    if command.role in CHECKOUT_ROLES:
        return [CHECKOUT_ROLES[command.role]]
    named = [arg for arg in rest if not arg.startswith("-")][:1] or [names[0]]
    if named[0] not in names:
        raise ConfigError(f"python -m fakesvc.service: no service {named[0]!r} (use {', '.join(names)})")
    return named


def health_urls(command: Command, environ: Mapping[str, str]) -> list[str]:
    """The routes that must answer 200 for ``command`` to be healthy (none for the one-shot generator)."""
    if command.role == "traffic":
        return []
    if command.role == "sink":
        values = settings.resolve(STANDALONE_ADDRESS, _flags(STANDALONE_ADDRESS, command.args)[0], environ)
        return [f"http://{_loopback(str(values['sink_host']))}:{values['sink_port']}{SINK_ROUTE}"]
    flags, rest = _flags(SERVICE_SETTINGS, command.args)
    config = service_config(flags, environ)
    graph = graph_of(config)
    return [
        f"http://{_loopback(config.host)}:{port_of(graph, name, config)}{SERVICE_ROUTE}"
        for name in _services(command, rest, graph.names)
    ]


def probe(url: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http URLs we built)
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} unreachable ({reason})"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.healthcheck",
        allow_abbrev=False,
        description="Exit 0 when the process this container runs answers its health route "
        f"({SERVICE_ROUTE} for services, {SINK_ROUTE} for the sink; the traffic generator has none), else 1.",
    )
    parser.add_argument(
        "role",
        nargs="?",
        choices=ROLES,
        help="what to check (default: the container's command, read from /proc/1/cmdline)",
    )
    parser.add_argument(
        "service",
        nargs="?",
        help="with the role service: which service of the graph (default: its first)",
    )
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        if args.service is not None and args.role != "service":
            raise ConfigError(f"a service name goes with the role service, not {args.role or 'none'}")
        command = Command(args.role, (args.service,) if args.service else ()) if args.role else container_command()
        urls = health_urls(command, environ)
    except ConfigError as exc:
        parser.exit(2, f"fakesvc: {exc}\n")
    failures = [failure for failure in map(probe, urls) if failure is not None]
    for failure in failures:
        print(f"fakesvc healthcheck: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
