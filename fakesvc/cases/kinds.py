"""Which fakesvc fault kinds make a case, what RCAEval calls each, and the rule each plays with.

RCAEval names a case directory ``{service}_{fault}`` and scores by that fault
name (``cpu``, ``mem``, ``disk``, ``socket``, ``delay``, ``loss``); fakesvc's
kinds map onto the ones it can play, and keep their own name otherwise. A
user may say either name (``--fault mem`` is ``memory``). ``noise`` is never a
case: it is harmless by design, a case needs a root cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakesvc.faults.rules import suggest


@dataclass(frozen=True)
class CaseKind:
    """A fault kind a case can play: fakesvc's name, RCAEval's, and the rule's own fields."""

    kind: str  # fakesvc's rule kind
    rcaeval: str  # the name in the case directory and RCAEval's scoring
    fields: tuple[tuple[str, Any], ...]  # the rule's fields besides kind and its window

    def rule(self, start_s: float, duration_s: float) -> dict[str, Any]:
        """The rule that plays this fault from ``start_s`` for ``duration_s`` (seconds after the services start)."""
        return {"kind": self.kind, **dict(self.fields), "start_s": start_s, "duration_s": duration_s}


# Order: RCAEval's own faults first, then fakesvc's request faults. The fields are each kind's documented
# defaults (docs/faults.md), written out so a case says exactly what it played.
CASE_KINDS: tuple[CaseKind, ...] = (
    CaseKind("cpu", "cpu", (("factor", 4.0), ("capacity_share", 0.25))),
    CaseKind("memory", "mem", (("leak_mb_per_s", 5.0), ("limit_mb", 512.0), ("restart_s", 5.0))),
    CaseKind("latency", "delay", (("latency_ms", 300.0),)),
    CaseKind("loss", "loss", (("probability", 0.1), ("delay_ms", 200.0))),
    CaseKind("error", "error", (("status", 503),)),
    CaseKind("hang", "hang", ()),
    CaseKind("drop", "drop", ()),
)
BY_KIND = {case_kind.kind: case_kind for case_kind in CASE_KINDS}
BY_RCAEVAL = {case_kind.rcaeval: case_kind for case_kind in CASE_KINDS}
NOT_A_CASE = {"noise": "noise is harmless by design (never a root cause): no case to find"}


class KindError(ValueError):
    """A fault name that makes no case; the message names it and the nearest one."""


def case_kind(name: str) -> CaseKind:
    """The kind called ``name`` by fakesvc (``memory``) or by RCAEval (``mem``)."""
    word = name.strip().lower()
    found = BY_KIND.get(word) or BY_RCAEVAL.get(word)
    if found is not None:
        return found
    if word in NOT_A_CASE:
        raise KindError(f"{name!r}: {NOT_A_CASE[word]}")
    known = [case_kind.kind for case_kind in CASE_KINDS]
    hint = suggest(word, [*known, *BY_RCAEVAL]) if len(word) <= 64 else ""
    raise KindError(f"no fault kind {name[:64]!r}{hint} (kinds: {', '.join(known)})")


def rcaeval_name(kind: str) -> str:
    """RCAEval's name of fakesvc's ``kind``; a kind it has no name for keeps its own."""
    found = BY_KIND.get(kind)
    return found.rcaeval if found is not None else kind
