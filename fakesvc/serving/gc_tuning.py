"""The cycle collector's setting for a serving process (each entry point applies it once).

Kept apart from the services so the benchmark's bare chain can apply the same
setting and its ratios measure the telemetry, not a GC setting.
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Run the cycle collector's youngest generation every 10,000 net allocations, not 700.

    Reference counting frees what a checkout allocates; the cycle collector finds next to
    nothing (~2,000 objects over 4,300 checkouts of the overhead load), yet at CPython's 700
    it ran ~640 times and took ~5 % of the supervisor's CPU; at 10,000 it runs about a dozen
    times (counted with ``gc.callbacks``).
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
