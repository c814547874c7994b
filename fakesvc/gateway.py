"""api-gateway: ``POST /checkout/{order_id}`` starts a checkout and asks payment-service to pay."""

from __future__ import annotations

from urllib.parse import quote

from fakesvc import BUSINESS_ROUTES
from fakesvc.config import ServiceConfig
from fakesvc.hop import Downstream, HopContext, HopError, HopSpec, UpstreamFailure, upstream_error_code
from fakesvc.service import AppFactory, app_factory

SERVICE = "api-gateway"


async def checkout(ctx: HopContext) -> dict[str, object]:
    """The gateway's work: log the checkout, pay, and map a failed payment to a 500."""
    ctx.log.info("Checkout initiated")
    try:
        await ctx.call("POST", f"/pay/{quote(ctx.key, safe='')}")
    except UpstreamFailure as exc:
        code = upstream_error_code("GATEWAY", exc)
        raise HopError(500, f"Checkout failed: {exc}", error_code=code, cause=exc) from exc
    return {"status": "SUCCESS", "order_id": ctx.key, "trace_id": ctx.trace_id}


def hop_spec(config: ServiceConfig) -> HopSpec:
    return HopSpec(
        service=SERVICE,
        code_prefix="GATEWAY",
        method="POST",
        route=BUSINESS_ROUTES[SERVICE],
        key="order_id",
        completed="Checkout completed",
        failed="Checkout failed",
        step=checkout,
        downstream=Downstream("payment-service", config.payment_url, config.payment_timeout_s),
    )


create_app: AppFactory = app_factory(hop_spec)

if __name__ == "__main__":
    from fakesvc.runner import main

    main("gateway", [SERVICE])
