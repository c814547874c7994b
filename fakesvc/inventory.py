"""inventory-service: ``GET /inventory/{item_id}`` looks the item up in its (simulated) database.

Scenario ``timeout``: the query hangs for ``FAKESVC_HANG_S`` (bounded), longer
than payment waits; when it finally returns, inventory logs the slow query.
"""

from __future__ import annotations

import asyncio
import zlib

from fakesvc import BUSINESS_ROUTES
from fakesvc.config import ServiceConfig
from fakesvc.hop import HopContext, HopSpec
from fakesvc.scenarios import HANG, scenario_fault
from fakesvc.service import AppFactory, app_factory

SERVICE = "inventory-service"
LATENCY_MS = (20.0, 80.0)


def in_stock(item_id: str) -> bool:
    """A stable answer per item: about one item in ten is out of stock."""
    return zlib.crc32(item_id.encode()) % 10 != 0


async def check_stock(ctx: HopContext) -> dict[str, object]:
    """Inventory's work: one query, which hangs in the ``timeout`` scenario."""
    with ctx.span("inventory.query", **{"db.system": "postgresql", "db.operation": "SELECT"}):
        if HANG in ctx.key:
            hang_s = ctx.config.hang_s
            ctx.inject(scenario_fault(SERVICE, HANG, "hang", f"query hangs {hang_s:g} s", delay_s=hang_s))
            ctx.slow = True
            await asyncio.sleep(hang_s)
        else:
            await ctx.simulate(*LATENCY_MS)
    return {"item_id": ctx.key, "available": in_stock(ctx.key)}


def hop_spec(_config: ServiceConfig) -> HopSpec:
    return HopSpec(
        service=SERVICE,
        code_prefix="INVENTORY",
        method="GET",
        route=BUSINESS_ROUTES[SERVICE],
        key="item_id",
        completed="Inventory check completed",
        failed="Inventory check failed",
        step=check_stock,
        slow_code="SLOW_QUERY",
    )


create_app: AppFactory = app_factory(hop_spec)

if __name__ == "__main__":
    from fakesvc.runner import main

    main("inventory", [SERVICE])
