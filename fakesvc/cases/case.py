"""Play one case and write it: the supervisor's run in a hidden directory, then the case beside it, renamed in."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fakesvc.cases import layout
from fakesvc.cases.export import RunInputs, fill_case
from fakesvc.cases.plan import CasePlan
from fakesvc.cases.play import play

WORK = ".work"  # the run's own files (sink database, outbox, chaos rules, supervisor log), inside the partial


def play_case(plan: CasePlan, out: Path) -> tuple[Path, dict[str, Any]]:
    """Play ``plan`` and write it as the next repetition in ``out``: its directory and its ``case.json``.

    Whatever stops it (a failed run, a signal) removes the partial directory:
    only a whole case is ever renamed into place.
    """
    partial = layout.new_partial(out / plan.directory)
    try:
        work = partial / WORK
        work.mkdir()
        files = play(plan, work)
        case = fill_case(partial, RunInputs(files.sink_db, files.truth, files.report, files.status), plan.graph, plan)
        shutil.rmtree(work)
        return layout.publish(partial), case
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
