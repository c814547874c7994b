"""api-gateway of the checkout graph: ``POST /checkout/{order_id}``, which asks payment-service to pay.

What it does is data (``fakesvc/graph/graphs/checkout.yaml``), run by the one hop
engine; this module keeps ``create_app`` and ``python -m fakesvc.gateway`` working.
"""

from __future__ import annotations

from fakesvc.service.app import AppFactory, app_factory

SERVICE = "api-gateway"

create_app: AppFactory = app_factory("checkout", SERVICE)

if __name__ == "__main__":
    from fakesvc.serving.runner import main

    main("gateway", [SERVICE])
