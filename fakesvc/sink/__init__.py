"""The embedded sink: a local, ProdSentinel-compatible ingestion backend that stores to SQLite."""

from fakesvc.sink.app import SinkConfig, SinkServer, create_app, start_sink
from fakesvc.sink.faults import Outage, SinkFaults

__all__ = ["Outage", "SinkConfig", "SinkFaults", "SinkServer", "create_app", "start_sink"]
