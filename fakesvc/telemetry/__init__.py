"""Remote telemetry: the ProdSentinel wire format, the batcher that delivers it, logs and spans."""
