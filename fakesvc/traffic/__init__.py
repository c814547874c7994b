"""Open-loop checkout traffic against the gateway, with the ground truth of every checkout."""

from fakesvc.traffic.config import TrafficConfig, add_traffic_arguments, traffic_config_from_args
from fakesvc.traffic.run import exit_status, format_summary, run_traffic

__all__ = [
    "TrafficConfig",
    "add_traffic_arguments",
    "exit_status",
    "format_summary",
    "run_traffic",
    "traffic_config_from_args",
]
