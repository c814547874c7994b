"""payment-service: ``POST /pay/{order_id}`` charges the card and checks stock with inventory-service.

Scenario ``fail-pay``: the issuer declines (a real ``ValueError`` with its traceback).
When inventory does not answer in time, payment answers 504 ``PAYMENT_TIMEOUT``.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from fakesvc.config import ServiceConfig
from fakesvc.faults import Chaos
from fakesvc.hop import Downstream, HopContext, HopError, HopSpec, Step, UpstreamFailure, upstream_error_code
from fakesvc.scenarios import DECLINED, scenario_fault
from fakesvc.service import build_app
from fakesvc.telemetry.pipeline import Telemetry

SERVICE = "payment-service"
LATENCY_MS = (100.0, 400.0)


def charge(order_id: str) -> None:
    """Ask the (simulated) issuer to authorise the charge."""
    if DECLINED in order_id:
        raise ValueError("Payment declined by issuer")


def pay_step(inventory: Downstream) -> Step:
    """Payment's work: charge, then check stock; a slow inventory becomes a 504."""

    async def pay(ctx: HopContext) -> dict[str, object]:
        with ctx.span("payment.authorize", **{"payment.order_id": ctx.key}):
            await ctx.simulate(*LATENCY_MS)
            try:
                charge(ctx.key)
            except ValueError as exc:
                ctx.inject(scenario_fault(SERVICE, DECLINED, "error", f"ValueError: {exc}"))
                raise HopError(500, str(exc), error_code="PAYMENT_DECLINED", cause=exc) from exc
        try:
            stock = await ctx.call(inventory, "GET", f"/inventory/{quote(ctx.key, safe='')}")
        except UpstreamFailure as exc:
            if exc.reason == "timeout":
                raise HopError(
                    504,
                    f"Payment timeout: {exc.detail} from {exc.service}",
                    error_code="PAYMENT_TIMEOUT",
                    cause=exc,
                    event="Payment timeout",
                ) from exc
            raise HopError(
                502,
                f"Inventory check failed: {exc}",
                error_code=upstream_error_code("PAYMENT", exc),
                cause=exc,
            ) from exc
        return {"order_id": ctx.key, "status": "AUTHORIZED", "available": stock.get("available")}

    return pay


def create_app(
    config: ServiceConfig,
    telemetry: Telemetry,
    *,
    chaos: Chaos | None = None,
    admin_token: str | None = None,
) -> web.Application:
    """The payment-service application."""
    inventory = Downstream("inventory-service", config.inventory_url, config.inventory_timeout_s)
    spec = HopSpec(
        service=SERVICE,
        code_prefix="PAYMENT",
        method="POST",
        route="/pay/{order_id}",
        key="order_id",
        completed="Payment authorized",
        failed="Payment failed",
        step=pay_step(inventory),
    )
    return build_app(spec, config, telemetry, chaos=chaos, admin_token=admin_token, calls_downstream=True)


if __name__ == "__main__":
    from fakesvc.runner import main

    main([SERVICE])
