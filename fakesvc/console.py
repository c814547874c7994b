"""Lines for the person at the terminal: stderr, so stdout stays pure JSON log lines."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
