"""payment-service: ``POST /pay/{order_id}`` charges the card and checks stock with inventory-service.

Scenario ``fail-pay``: the issuer declines (a real ``ValueError`` with its traceback).
When inventory does not answer in time, payment answers 504 ``PAYMENT_TIMEOUT``.
"""

from __future__ import annotations

from urllib.parse import quote

from fakesvc import BUSINESS_ROUTES
from fakesvc.config import ServiceConfig
from fakesvc.hop import Downstream, HopContext, HopError, HopSpec, UpstreamFailure, upstream_error_code
from fakesvc.scenarios import DECLINED, scenario_fault
from fakesvc.service import AppFactory, app_factory

SERVICE = "payment-service"
LATENCY_MS = (100.0, 400.0)
DECLINED_STATUS = 500


def charge(order_id: str) -> None:
    """Ask the (simulated) issuer to authorise the charge."""
    if DECLINED in order_id:
        raise ValueError("Payment declined by issuer")


async def pay(ctx: HopContext) -> dict[str, object]:
    """Payment's work: charge, then check stock; an inventory that does not answer becomes a 504."""
    with ctx.span("payment.authorize", **{"payment.order_id": ctx.key}):
        await ctx.simulate(*LATENCY_MS)
        try:
            charge(ctx.key)
        except ValueError as exc:
            ctx.inject(scenario_fault(SERVICE, DECLINED, "error", f"ValueError: {exc}", status=DECLINED_STATUS))
            raise HopError(DECLINED_STATUS, str(exc), error_code="PAYMENT_DECLINED", cause=exc) from exc
    try:
        stock = await ctx.call("GET", f"/inventory/{quote(ctx.key, safe='')}")
    except UpstreamFailure as exc:
        if exc.reason == "timeout":
            detail = f"Payment timeout: {exc}"  # inventory-service did not answer within 2 s
            raise HopError(504, detail, error_code="PAYMENT_TIMEOUT", cause=exc, event="Payment timeout") from exc
        code = upstream_error_code("PAYMENT", exc)
        raise HopError(502, f"Payment failed: {exc}", error_code=code, cause=exc) from exc
    return {"order_id": ctx.key, "status": "AUTHORIZED", "available": stock.get("available")}


def hop_spec(config: ServiceConfig) -> HopSpec:
    return HopSpec(
        service=SERVICE,
        code_prefix="PAYMENT",
        method="POST",
        route=BUSINESS_ROUTES[SERVICE],
        key="order_id",
        completed="Payment authorized",
        failed="Payment failed",
        step=pay,
        downstream=Downstream("inventory-service", config.inventory_url, config.inventory_timeout_s),
    )


create_app: AppFactory = app_factory(hop_spec)

if __name__ == "__main__":
    from fakesvc.runner import main

    main("payment", [SERVICE])
