"""Which graph a process runs, where each of its services listens, and where callers find it.

A port is, in order: the checkout's named setting (``GATEWAY_PORT``,
``PAYMENT_PORT``, ``INVENTORY_PORT``: SPEC section 10), ``<PREFIX>_PORT`` in
the environment (any graph: ``CARTSERVICE_PORT``), the graph file's
``port``, else ``FAKESVC_BASE_PORT`` plus the service's index (0: any free
port). A caller finds a service at ``PAYMENT_URL``/``INVENTORY_URL``, else
``<PREFIX>_URL``, else on loopback at its port: separate hosts set the URLs.
Light to import (no aiohttp): the container probe reads it.
"""

from __future__ import annotations

from typing import Any

from fakesvc import settings
from fakesvc.config import ServiceConfig
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph
from fakesvc.settings import ConfigError

MAX_PORT = 65535
_NAMED_PORTS = {"GATEWAY": "gateway_port", "PAYMENT": "payment_port", "INVENTORY": "inventory_port"}
_NAMED_URLS = {"PAYMENT": "payment_url", "INVENTORY": "inventory_url"}
# Settings that override the graph parameters of the same name (the checkout's timeouts, any graph's hang).
PARAMETER_SETTINGS = ("inventory_timeout_s", "payment_timeout_s", "hang_s")


def graph_of(config: ServiceConfig) -> Graph:
    """The graph ``config`` names, its parameters overridden by the settings; :class:`ConfigError` if it is bad.

    Every service's port and URL settings are read here too, so a bad ``CARTSERVICE_PORT`` stops
    the program at start with one line, before anything listens or sends.
    """
    graph = load_graph(config.graph, {name: getattr(config, name) for name in PARAMETER_SETTINGS})
    for name in graph.names:
        port_of(graph, name, config)  # a bad CARTSERVICE_PORT, or a base port the graph overflows
        url_of(graph, name, config)
    return graph


def _from_env(config: ServiceConfig, name: str, parse: Any) -> Any:
    raw = config.address_env.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc} (got {raw!r})") from None


def port_of(graph: Graph, service: str, config: ServiceConfig) -> int:
    """The port ``service`` listens on (0: any free one)."""
    found = graph.service(service)
    named = _NAMED_PORTS.get(found.code_prefix)
    if named is not None and getattr(config, named) is not None:
        return int(getattr(config, named))
    port = _from_env(config, f"{found.code_prefix}_PORT", settings.port)
    if port is not None:
        return int(port)
    if found.port is not None:
        return found.port
    if not config.base_port:
        return 0
    port = config.base_port + graph.names.index(service)
    if port > MAX_PORT:
        raise ConfigError(base_port_problem(graph, config.base_port, service))
    return port


def base_port_problem(graph: Graph, base_port: int, service: str) -> str:
    """Why ``base_port`` does not fit ``graph``: ``service``, placed by its index, would listen past 65535."""
    index, last = graph.names.index(service), len(graph.services) - 1
    return (
        f"FAKESVC_BASE_PORT (--base-port) {base_port}: the graph {graph.name} has {len(graph.services)} services, "
        f"and {service} (index {index}) would listen on {base_port + index}, past {MAX_PORT}; "
        f"use a base port of at most {MAX_PORT - last} (or 0 for free ports)"
    )


def url_of(graph: Graph, service: str, config: ServiceConfig) -> str:
    """The base URL a caller reaches ``service`` at, when it is not bound in this process."""
    prefix = graph.service(service).code_prefix
    named = _NAMED_URLS.get(prefix)
    if named is not None and getattr(config, named) is not None:
        return str(getattr(config, named))
    url = _from_env(config, f"{prefix}_URL", settings.http_url)
    return str(url) if url is not None else f"http://127.0.0.1:{port_of(graph, service, config)}"
