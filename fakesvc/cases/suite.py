"""Every service x fault combination of a graph, ``repeat`` times: resumable, with progress and an ETA.

A combination already holding ``repeat`` complete cases is skipped, so a suite
cut short (Ctrl-C, a reboot) is run again with the same command and plays
only what is missing. Repetition ``n`` plays with seed ``seed + n - 1``: the
same command gives the same cases. Each case that fails is said and counted,
and the suite goes on; the index is rewritten after every case.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fakesvc.cases import layout
from fakesvc.cases.case import play_case
from fakesvc.cases.index import write_index
from fakesvc.cases.plan import CasePlan
from fakesvc.cases.play import UNEXPLAINED, PlayError
from fakesvc.console import say
from fakesvc.settings import ConfigError

OVERHEAD_S = 6.0  # a case's start, record collection and shutdown beyond its traffic (measured: 3-5 s)


@dataclass(frozen=True)
class Pending:
    """A combination and the repetitions it still lacks."""

    plan: CasePlan
    missing: int
    done: int


def pending(plans: Sequence[CasePlan], repeat: int, out: Path) -> list[Pending]:
    """What is left to play: for each plan, how many of its ``repeat`` cases are not yet in ``out``."""
    found = []
    for plan in plans:
        done = len(layout.repetitions(out / plan.directory))
        found.append(Pending(plan, max(0, repeat - done), done))
    return found


def duration(seconds: float) -> str:
    """``1h02m``, ``4m05s``, ``12s``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_suite(plans: Sequence[CasePlan], repeat: int, out: Path) -> int:
    """Play what is missing; 0 when every case was played and explained, 1 when any failed or was the harness's."""
    todo = pending(plans, repeat, out)
    total = sum(item.missing for item in todo)
    complete = sum(min(item.done, repeat) for item in todo)
    say(f"suite: {len(plans)} combinations x {repeat}: {total} cases to play, {complete} already complete")
    taken: list[float] = []
    played = failed = unexplained = 0
    for item in todo:
        for extra in range(item.missing):
            repetition = item.done + extra + 1
            plan = replace(item.plan, seed=item.plan.seed + repetition - 1)
            estimate = sum(taken) / len(taken) if taken else plan.windows.played_s + OVERHEAD_S
            say(
                f"[{played + failed + 1}/{total}] {plan.directory} repetition {repetition} "
                f"(seed {plan.seed}, {plan.windows.played_s:g} s of traffic); "
                f"ETA {duration(estimate * (total - played - failed))}"
            )
            began = time.monotonic()
            try:
                path, case = play_case(plan, out)
            except (PlayError, ConfigError) as exc:
                failed += 1
                say(f"  failed: {exc}")
                continue
            taken.append(time.monotonic() - began)
            played += 1
            if case["harness"]["supervisor_status"] == UNEXPLAINED:
                unexplained += 1
                say(f"  {path}: written, but some checkouts failed with no injected cause (case.json: harness)")
            print(path, flush=True)
            write_index(out)
    entries = write_index(out) if out.is_dir() else []
    say(
        f"suite: {played} played, {failed} failed, {unexplained} with harness failures; "
        f"{len(entries)} cases in {out}/index.csv"
    )
    return 1 if failed or unexplained else 0
