"""RCAEval-shaped cases: one fault on one service, played for real and written in RCAEval RE2's layout.

``python -m fakesvc.cases run|suite|export`` (docs/cases.md). A case is
``OUT/{service}_{fault}/{n}/`` holding ``data.csv`` (one row a second, the
per-service series), ``inject_time.txt``, ``logs.csv``, ``traces.csv``, the
15 s series of the multi-source methods (``logts.csv``, ``tracets_err.csv``,
``tracets_lat.csv``), and
fakesvc's own ``truth.jsonl``, ``report.json`` and ``case.json``: what
RCAEval's ``main.py`` reads, plus the ground truth it cannot see.
"""
