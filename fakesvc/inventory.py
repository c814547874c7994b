"""inventory-service of the checkout graph: ``GET /inventory/{item_id}``, a stock query.

What it does is data (``fakesvc/graph/graphs/checkout.yaml``), run by the one hop
engine; this module keeps ``create_app`` and ``python -m fakesvc.inventory`` working.
"""

from __future__ import annotations

from fakesvc.service.app import AppFactory, app_factory

SERVICE = "inventory-service"

create_app: AppFactory = app_factory("checkout", SERVICE)

if __name__ == "__main__":
    from fakesvc.serving.runner import main

    main("inventory", [SERVICE])
