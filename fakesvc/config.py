"""What a service needs to know to run: one frozen dataclass, built from flags and environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from fakesvc import settings
from fakesvc.settings import Setting

TRACE_EXPORTERS = ("console", "none", "prodsentinel", "otlp")
REMOTE_SIGNALS = ("logs", "metrics")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings shared by every service of the graph; each reads the fields it needs.

    The ports and URLs named here are the checkout's (SPEC section 10); None
    means the graph's own (its file, or the base port plus the service's
    index). Any graph's service is also placed by ``<PREFIX>_PORT`` and
    ``<PREFIX>_URL`` in the environment (``address_env``), its prefix being
    its ``code_prefix`` (see :mod:`fakesvc.graph.placement`).
    """

    host: str = "127.0.0.1"
    graph: str = "checkout"
    base_port: int = 8100
    gateway_port: int | None = None
    payment_port: int | None = None
    inventory_port: int | None = None
    payment_url: str | None = None
    inventory_url: str | None = None
    latency_scale: float = 1.0
    inventory_timeout_s: float = 2.0
    payment_timeout_s: float = 5.0
    hang_s: float = 5.0
    seed: int | None = None
    shutdown_grace_s: float = 3.0
    idle_timeout_s: float = 30.0
    # Cancel a handler whose caller hung up (aiohttp's handler_cancellation), so hangs do not pile up;
    # a cancelled hop still emits its evidence (log, span, metric) as it unwinds (fakesvc/service/hop.py).
    handler_cancellation: bool = True
    own_process: bool = False  # the service runs alone in its process: its real CPU and RSS are exported too
    address_env: Mapping[str, str] = field(default_factory=dict)  # the *_PORT and *_URL variables, read at start


SERVICE_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_HOST", "--host", "127.0.0.1", settings.text, "bind address of the services"),
    Setting(
        "FAKESVC_GRAPH",
        "--graph",
        "checkout",
        settings.non_empty_text,
        "the service graph: a built-in name (checkout, shop) or a YAML/JSON file",
    ),
    Setting(
        "FAKESVC_BASE_PORT",
        "--base-port",
        8100,
        settings.port,
        "a graph service with no port of its own listens on this plus its index; 0 = any free port",
    ),
    Setting("GATEWAY_PORT", "--gateway-port", None, settings.port, "api-gateway port", shown="8003"),
    Setting("PAYMENT_PORT", "--payment-port", None, settings.port, "payment-service port", shown="8004"),
    Setting("INVENTORY_PORT", "--inventory-port", None, settings.port, "inventory-service port", shown="8002"),
    Setting(
        "PAYMENT_URL", "--payment-url", None, settings.http_url, "where the gateway finds payment", shown="its port"
    ),
    Setting(
        "INVENTORY_URL", "--inventory-url", None, settings.http_url, "where payment finds inventory", shown="its port"
    ),
    Setting(
        "FAKESVC_LATENCY_SCALE",
        "--latency-scale",
        1.0,
        settings.non_negative_float,
        "multiplies the baseline simulated latencies; 0 = none",
    ),
    Setting(
        "FAKESVC_INVENTORY_TIMEOUT_S",
        "--inventory-timeout-s",
        2.0,
        settings.positive_float,
        "payment's timeout on its inventory call",
    ),
    Setting(
        "FAKESVC_PAYMENT_TIMEOUT_S",
        "--payment-timeout-s",
        5.0,
        settings.positive_float,
        "gateway's timeout on its payment call",
    ),
    Setting(
        "FAKESVC_HANG_S",
        "--hang-s",
        5.0,
        settings.non_negative_float,
        "how long inventory hangs in the timeout scenario",
    ),
    Setting(
        "FAKESVC_IDLE_TIMEOUT_S",
        "--idle-timeout-s",
        30.0,
        settings.positive_float,
        "close a connection that has not sent a whole request for this long (idle or partial)",
    ),
    Setting("FAKESVC_SEED", "--seed", None, settings.optional_int, "seed of every random decision"),
)


def service_config(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Build the service config (flag > env > default); unset ports and URLs are the graph's."""
    environ = os.environ if environ is None else environ
    values = settings.resolve(SERVICE_SETTINGS, args, environ)
    address_env = {name: value for name, value in environ.items() if name.endswith(("_PORT", "_URL"))}
    return ServiceConfig(**values, address_env=address_env)
