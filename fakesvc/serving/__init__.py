"""Serving services in one event loop: start them callees first, stop them from the edge inward.

:mod:`.runner` binds and stops the services; :mod:`.stop_signals` (SIGINT,
SIGTERM, Windows too), :mod:`.in_flight` (requests cut at shutdown),
:mod:`.body_deadline` (slow bodies), :mod:`.loop_errors` (EMFILE said once) and
:mod:`.gc_tuning` bound what a long run can do to the process.
"""
