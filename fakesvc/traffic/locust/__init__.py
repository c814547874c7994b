"""Closed-loop checkout load from Locust users, distributed over workers, with the built-in generator's truth.

``python -m fakesvc.traffic.locust [LOCUST OPTIONS]`` runs Locust on the
packaged Locust file (``LOCUSTFILE``); ``locust -f`` that file does the same.
Nothing here imports Locust: only the Locust file does, in Locust's process.
"""

from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
