"""fakesvc: a failing checkout (api-gateway -> payment -> inventory) that emits labelled telemetry."""

__version__ = "0.1.0"

SERVICE_NAMES = ("api-gateway", "payment-service", "inventory-service")

# Each service's business route: what its hop serves, and the only route its fault rules may name.
BUSINESS_ROUTES = {
    "api-gateway": "/checkout/{order_id}",
    "payment-service": "/pay/{order_id}",
    "inventory-service": "/inventory/{item_id}",
}
