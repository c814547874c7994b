"""deploy/smoke.sh: what can be held without a Docker daemon.

The script itself runs the image, compose and the graphs for real; it needs a daemon and root,
so it is not part of the test command (docs/deploy.md). Here: it passes ShellCheck, it exits 2
with how to get a daemon when none answers, and its list of steps (what it marks SKIP when the
build fails) names every step it runs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.deploy_fixtures import ROOT, TOOLS

SMOKE = ROOT / "deploy" / "smoke.sh"


def test_the_smoke_script_passes_shellcheck() -> None:
    result = subprocess.run([str(TOOLS / "shellcheck"), str(SMOKE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_docker_daemon_it_says_how_to_get_one_and_exits_2(tmp_path: Path) -> None:
    environ = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(SMOKE)], capture_output=True, text=True, env=environ, stdin=subprocess.DEVNULL, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Docker daemon answers" in result.stderr
    assert "apt-get install docker.io docker-compose" in result.stderr and "dockerd" in result.stderr
    assert "step" not in result.stdout  # no table: nothing ran
    assert [path.name for path in tmp_path.iterdir() if not path.name.startswith("fakesvc-smoke.")] == []


def test_the_list_of_steps_names_every_step_after_the_build() -> None:
    text = SMOKE.read_text()
    run = text[text.index("# ---- the run") :]
    listed = re.search(r"ALL_STEPS=\((.*?)\)\n", run, re.S)
    assert listed, "ALL_STEPS=(...) not found"
    names = re.findall(r'"([^"]+)"', listed.group(1))
    stepped = re.findall(r'\bstep "([^"]+)"', run)
    assert stepped[:2] == ["base image", "build"]
    assert sorted(names) == sorted(stepped[2:]) and len(set(names)) == len(names)
