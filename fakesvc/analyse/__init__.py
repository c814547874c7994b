"""The reference root-cause analyser: a trace's stored signals in, a ranked list of services out.

``python -m fakesvc.analyse --truth truth.jsonl --from URL`` reads every
checkout's signals from ``URL/query/traces/{trace_id}`` and writes one
prediction line per checkout it judges an incident, on the graph ``--graph``
names (:mod:`fakesvc.analyse.graphs`). Its rule and its limits: docs/analyser.md.
"""

from fakesvc.analyse.evidence import full_view, summarise
from fakesvc.analyse.rule import Judgement, judge

__all__ = ["Judgement", "full_view", "judge", "summarise"]
