"""JSON encoding with orjson when it is installed (the ``fast`` extra), the stdlib otherwise."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # the plain install: same output shape, slower
    orjson = None  # type: ignore[assignment]


def _default(value: Any) -> str:
    return str(value)


if orjson is not None:

    def dumps_bytes(value: Any) -> bytes:
        """Compact JSON as bytes; values JSON cannot hold become their ``str()``."""
        return orjson.dumps(value, default=_default)

    def dumps_str(value: Any, **_ignored: Any) -> str:
        return orjson.dumps(value, default=_default).decode()

    loads = orjson.loads
else:

    def dumps_bytes(value: Any) -> bytes:
        """Compact JSON as bytes; values JSON cannot hold become their ``str()``."""
        return json.dumps(value, separators=(",", ":"), default=_default).encode()

    def dumps_str(value: Any, **_ignored: Any) -> str:
        return json.dumps(value, separators=(",", ":"), default=_default)

    loads = json.loads
