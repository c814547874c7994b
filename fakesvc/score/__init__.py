"""Score a root-cause analyser against fakesvc's ground truth (``python -m fakesvc.score``).

- :mod:`~fakesvc.score.inputs`: truth and predictions files read, checked and joined;
- :mod:`~fakesvc.score.metrics`: AC@k, Avg@k, detection precision/recall, breakdowns;
- :mod:`~fakesvc.score.mentions`: the services of a graph a free-text root cause names, in order;
- :mod:`~fakesvc.score.prodsentinel`: predictions read from ProdSentinel's query API;
- :mod:`~fakesvc.score.table`: the report as a table for people.
"""
