"""fakesvc: services from a graph file (by default the checkout, api-gateway -> payment -> inventory) that fail on purpose and emit labelled telemetry."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``SERVICE_NAMES`` and ``BUSINESS_ROUTES``: the checkout graph's, read from its file when first asked for.

    The graph file is their one home; reading it lazily keeps ``import fakesvc`` light.
    """
    if name not in ("SERVICE_NAMES", "BUSINESS_ROUTES"):
        raise AttributeError(f"module 'fakesvc' has no attribute {name!r}")
    from fakesvc.graph.load import load_graph

    checkout = load_graph("checkout")
    if name == "SERVICE_NAMES":
        return checkout.names
    return {service.name: service.routes[0].path for service in checkout.services}
