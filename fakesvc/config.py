"""What a service needs to know to run: one frozen dataclass, built from flags and environment."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from fakesvc import settings
from fakesvc.settings import Setting

TRACE_EXPORTERS = ("console", "none", "prodsentinel", "otlp")
REMOTE_SIGNALS = ("logs", "metrics")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings shared by the three services; each reads the fields it needs."""

    host: str = "127.0.0.1"
    gateway_port: int = 8003
    payment_port: int = 8004
    inventory_port: int = 8002
    payment_url: str = "http://127.0.0.1:8004"
    inventory_url: str = "http://127.0.0.1:8002"
    latency_scale: float = 1.0
    inventory_timeout_s: float = 2.0
    payment_timeout_s: float = 5.0
    hang_s: float = 5.0
    seed: int | None = None
    shutdown_grace_s: float = 3.0
    idle_timeout_s: float = 30.0
    # Cancel a handler whose caller hung up (aiohttp's handler_cancellation), so hangs do not pile up;
    # a cancelled hop still emits its evidence (log, span, metric) as it unwinds (fakesvc/hop.py).
    handler_cancellation: bool = True


SERVICE_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_HOST", "--host", "127.0.0.1", settings.text, "bind address of the services"),
    Setting("GATEWAY_PORT", "--gateway-port", 8003, settings.port, "api-gateway port"),
    Setting("PAYMENT_PORT", "--payment-port", 8004, settings.port, "payment-service port"),
    Setting("INVENTORY_PORT", "--inventory-port", 8002, settings.port, "inventory-service port"),
    Setting("PAYMENT_URL", "--payment-url", None, settings.http_url, "where the gateway finds payment"),
    Setting("INVENTORY_URL", "--inventory-url", None, settings.http_url, "where payment finds inventory"),
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
    """Build the service config (flag > env > default); downstream URLs follow the ports."""
    values = settings.resolve(SERVICE_SETTINGS, args, environ)
    if values["payment_url"] is None:
        values["payment_url"] = f"http://127.0.0.1:{values['payment_port']}"
    if values["inventory_url"] is None:
        values["inventory_url"] = f"http://127.0.0.1:{values['inventory_port']}"
    return ServiceConfig(**values)
