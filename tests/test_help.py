"""``--help`` of every entry point: defaults written as a user would type them, and every choice listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fakesvc.faults.profiles import ALL_PROFILE_NAMES as PROFILE_NAMES  # every graph's
from fakesvc.telemetry.pipeline import REMOTE_SIGNALS, TRACE_EXPORTERS
from tests.processes import ROOT

SCENARIOS = "scenarios success, fail-pay, timeout (default success=90,fail-pay=5,timeout=5)"
TELEMETRY = [
    f"comma list of {', '.join(REMOTE_SIGNALS)}; default {','.join(sorted(REMOTE_SIGNALS))})",
    f"comma list of {', '.join(TRACE_EXPORTERS)}; default prodsentinel)",
    f"one of {', '.join(PROFILE_NAMES)}; default none)",
]
ENTRY_POINTS = {
    "supervisor.py": [
        *TELEMETRY,
        SCENARIOS,
        "one of auto, on, off; default auto)",
        "[--sink-port FAKESVC_SINK_PORT]",
        "(env FAKESVC_SINK_PORT; default 8000)",
        "(env FAKESVC_SINK_HOST; default 127.0.0.1)",
        "(default 1000)",
    ],
    "fakesvc.payment": TELEMETRY,
    "fakesvc.gateway": TELEMETRY,
    "fakesvc.sink": [
        "--sink-port FAKESVC_SINK_PORT, --port FAKESVC_SINK_PORT",
        "(env FAKESVC_SINK_PORT; default 8000)",
        "--sink-host FAKESVC_SINK_HOST, --host FAKESVC_SINK_HOST",
    ],
    "fakesvc.traffic": [SCENARIOS, "(default 1000)", "(default http://127.0.0.1:8003)"],
    "fakesvc.score": ["--predictions FILE", "- reads stdin", "docs/scoring.md"],
    "fakesvc.analyse": ["(default full)", "(default 8)", "(default 1000,"],
    "fakesvc.truth": ["--service SERVICE"],
}


def help_text(entry_point: str) -> str:
    args = [str(ROOT / entry_point)] if entry_point.endswith(".py") else ["-m", entry_point]
    # wide enough that argparse puts each option's help on one line
    env = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_help_shows_readable_defaults_and_the_allowed_values(entry_point: str) -> None:
    text = help_text(entry_point)
    for noise in ("frozenset(", "None", "default '", "default ("):
        assert noise not in text, f"{noise!r} in the help of {entry_point}"
    for line in text.splitlines():
        if "(env " in line:
            assert "; default " in line, line
    for wanted in ENTRY_POINTS[entry_point]:
        assert wanted in text, f"{wanted!r} not in the help of {entry_point}:\n{text}"


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_every_setting_an_entry_point_reads_is_in_the_configuration_doc(entry_point: str) -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for variable in re.findall(r"\(env ([A-Z0-9_]+);", help_text(entry_point)):
        assert f"`{variable}`" in documented, f"{variable} ({entry_point}) is not in docs/configuration.md"
