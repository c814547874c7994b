"""The metrics: RCAEval's AC@k and Avg@k over faulty checkouts, detection precision and recall, kind accuracy.

- AC@k: the share of faulty checkouts with one of their root-cause services in
  the prediction's top k (a checkout without a prediction, or with
  ``services: []``, is wrong at every k); Avg@k: the mean of AC@1..AC@k.
- Detection: a prediction (``services`` empty or not) is an incident; precision
  is the share of incidents that are faulty checkouts, recall the share of
  faulty checkouts that got one.
- Kind accuracy: over faulty checkouts whose prediction names a ``kind``, the
  share equal (case-insensitively) to the truth's kind.

A metric with nothing to measure (no faulty checkout, no incident) is None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fakesvc.score.inputs import Checkout, Joined, Prediction

TOP_K = 3
HEALTHY = "none"  # the breakdown group of healthy checkouts (no root-cause service, no kind)


def share(part: int, whole: int) -> float | None:
    """``part / whole`` to 4 places; None when there is no whole to measure."""
    return round(part / whole, 4) if whole else None


def rank(checkout: Checkout, prediction: Prediction | None) -> int | None:
    """The 1-based position of the first root-cause service in the prediction's ranking (None: absent)."""
    if prediction is None:
        return None
    for position, service in enumerate(prediction.services, 1):
        if service in checkout.root_causes:
            return position
    return None


@dataclass
class Tally:
    """Counts over one group of checkouts, from which every metric follows."""

    checkouts: int = 0
    faulty: int = 0
    right_at: list[int] = field(default_factory=lambda: [0] * TOP_K)  # right_at[k-1]: faulty, right at k
    true_detections: int = 0
    false_detections: int = 0
    kinds_given: int = 0
    kinds_right: int = 0

    def add(self, checkout: Checkout, prediction: Prediction | None) -> None:
        self.checkouts += 1
        if not checkout.faulty:
            self.false_detections += prediction is not None
            return
        self.faulty += 1
        if prediction is None:
            return
        self.true_detections += 1
        position = rank(checkout, prediction)
        for k in range(1, TOP_K + 1):
            self.right_at[k - 1] += position is not None and position <= k
        if prediction.kind is not None:
            self.kinds_given += 1
            self.kinds_right += prediction.kind.casefold() == (checkout.kind or "").casefold()

    def metrics(self) -> dict[str, Any]:
        accuracy = [share(right, self.faulty) for right in self.right_at]
        detected = self.true_detections + self.false_detections
        return {
            "checkouts": self.checkouts,
            "faulty": self.faulty,
            "healthy": self.checkouts - self.faulty,
            "detected": detected,
            "ac@1": accuracy[0],
            "ac@3": accuracy[2],
            "avg@3": share(sum(self.right_at), TOP_K * self.faulty),  # the mean of AC@1..AC@3
            "detection_precision": share(self.true_detections, detected),
            "detection_recall": share(self.true_detections, self.faulty),
            "kind_accuracy": share(self.kinds_right, self.kinds_given),
        }


def _groups(checkout: Checkout) -> dict[str, Iterable[str]]:
    """The breakdown groups a checkout counts in: a two-fault checkout counts for both services."""
    return {
        "by_scenario": [checkout.scenario],
        "by_kind": [checkout.kind or HEALTHY],
        "by_service": dict.fromkeys(checkout.root_causes) or [HEALTHY],
    }


def score(joined: Joined) -> dict[str, Any]:
    """The whole report: overall metrics, then the same metrics per scenario, kind and service."""
    overall = Tally()
    breakdowns: dict[str, dict[str, Tally]] = {"by_scenario": {}, "by_kind": {}, "by_service": {}}
    for checkout, prediction in zip(joined.checkouts, joined.predictions, strict=True):
        overall.add(checkout, prediction)
        for breakdown, names in _groups(checkout).items():
            for name in names:
                breakdowns[breakdown].setdefault(name, Tally()).add(checkout, prediction)
    return {
        **overall.metrics(),
        **{
            breakdown: {name: tally.metrics() for name, tally in sorted(tallies.items())}
            for breakdown, tallies in breakdowns.items()
        },
        "unmatched_predictions": joined.unmatched,
    }
