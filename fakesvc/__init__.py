"""fakesvc: a failing checkout (api-gateway -> payment -> inventory) that emits labelled telemetry."""

__version__ = "0.1.0"

SERVICE_NAMES = ("api-gateway", "payment-service", "inventory-service")
