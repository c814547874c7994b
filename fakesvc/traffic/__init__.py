"""Open-loop checkout traffic against the gateway, with the ground truth of every checkout.

The names below are imported when first used, so ``python -m fakesvc.traffic``
can take SIGINT and SIGTERM over before the heavy modules load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakesvc.traffic.config import TrafficConfig, add_traffic_arguments, traffic_config_from_args
    from fakesvc.traffic.run import exit_status, format_summary, run_traffic

_HOMES = {
    "TrafficConfig": "fakesvc.traffic.config",
    "add_traffic_arguments": "fakesvc.traffic.config",
    "traffic_config_from_args": "fakesvc.traffic.config",
    "exit_status": "fakesvc.traffic.run",
    "format_summary": "fakesvc.traffic.run",
    "run_traffic": "fakesvc.traffic.run",
}

__all__ = [
    "TrafficConfig",
    "add_traffic_arguments",
    "exit_status",
    "format_summary",
    "run_traffic",
    "traffic_config_from_args",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fakesvc.traffic' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
