"""The one engine every service of every graph runs: ``python -m fakesvc.service NAME [--graph G]``.

:mod:`.app` assembles a service's aiohttp application (routes, health,
telemetry, the /chaos API); :mod:`.hop` is the skeleton of one request (faults,
evidence, the answer); :mod:`.script` runs a route's steps; :mod:`.correlation`,
:mod:`.http_errors` and :mod:`.prometheus` are the middlewares and routes every
service shares.
"""
