"""``python -m fakesvc.traffic.locust [LOCUST OPTIONS]``: Locust on the packaged Locust file.

The process becomes ``python -m locust -f LOCUSTFILE --stop-timeout 35 ...``
(exec, so signals and the exit status are Locust's own): Locust is imported
fresh, before anything else, as its gevent monkey-patching wants. The stop
timeout lets the checkouts in flight at the end of a run finish (the
services' longest wait is the generator's 30 s checkout timeout) instead of
being cut; a later ``--stop-timeout`` wins.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from fakesvc.traffic.locust import LOCUSTFILE
from fakesvc.traffic.locust.options import add_load_arguments
from fakesvc.traffic.truth import DEFAULT_TIMEOUTS

STOP_TIMEOUT_S = DEFAULT_TIMEOUTS.checkout_s + 5


def _print_own_help() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.traffic.locust",
        usage="%(prog)s [FAKESVC OPTIONS] [LOCUST OPTIONS]",
        description="Closed-loop checkout load from Locust users, with the ground truth of every checkout. "
        "The fakesvc options below, then Locust's own.",
        add_help=False,
        allow_abbrev=False,
    )
    add_load_arguments(parser)
    parser.print_help()
    print(flush=True)


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        _print_own_help()
    if importlib.util.find_spec("locust") is None:
        print("fakesvc: Locust is not installed: pip install 'fakesvc[locust]'", file=sys.stderr)
        sys.exit(2)
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--stop-timeout", f"{STOP_TIMEOUT_S:g}"]
    os.execv(sys.executable, [*argv, *sys.argv[1:]])


if __name__ == "__main__":
    main()
