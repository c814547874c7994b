"""api-gateway: ``POST /checkout/{order_id}`` starts a checkout and asks payment-service to pay."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from fakesvc.config import ServiceConfig
from fakesvc.faults import Chaos
from fakesvc.hop import Downstream, HopContext, HopError, HopSpec, Step, UpstreamFailure, upstream_error_code
from fakesvc.service import build_app
from fakesvc.telemetry.pipeline import Telemetry

SERVICE = "api-gateway"


def checkout_step(payment: Downstream) -> Step:
    """The gateway's work: log the checkout, pay, and map a failed payment to a 500."""

    async def checkout(ctx: HopContext) -> dict[str, object]:
        ctx.log.info("Checkout initiated")
        try:
            await ctx.call(payment, "POST", f"/pay/{quote(ctx.key, safe='')}")
        except UpstreamFailure as exc:
            raise HopError(
                500,
                f"Checkout failed: {exc}",
                error_code=upstream_error_code("GATEWAY", exc),
                cause=exc,
            ) from exc
        return {"status": "SUCCESS", "order_id": ctx.key, "trace_id": ctx.trace_id}

    return checkout


def create_app(
    config: ServiceConfig,
    telemetry: Telemetry,
    *,
    chaos: Chaos | None = None,
    admin_token: str | None = None,
) -> web.Application:
    """The api-gateway application."""
    payment = Downstream("payment-service", config.payment_url, config.payment_timeout_s)
    spec = HopSpec(
        service=SERVICE,
        code_prefix="GATEWAY",
        method="POST",
        route="/checkout/{order_id}",
        key="order_id",
        completed="Checkout completed",
        failed="Checkout failed",
        step=checkout_step(payment),
    )
    return build_app(spec, config, telemetry, chaos=chaos, admin_token=admin_token, calls_downstream=True)


if __name__ == "__main__":
    from fakesvc.runner import main

    main([SERVICE])
