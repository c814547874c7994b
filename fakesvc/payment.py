"""payment-service of the checkout graph: ``POST /pay/{order_id}``, a charge, then a stock check.

What it does is data (``fakesvc/graph/graphs/checkout.yaml``), run by the one hop
engine; this module keeps ``create_app`` and ``python -m fakesvc.payment`` working.
"""

from __future__ import annotations

from fakesvc.service.app import AppFactory, app_factory

SERVICE = "payment-service"

create_app: AppFactory = app_factory("checkout", SERVICE)

if __name__ == "__main__":
    from fakesvc.serving.runner import main

    main("payment", [SERVICE])
