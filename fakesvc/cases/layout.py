"""Where cases go: ``OUT/{service}_{fault}/{n}/``, written whole or not at all.

A case is written into a hidden directory beside its place
(``.partial-{pid}-{token}``: RCAEval's ``glob("**/data.csv")`` skips hidden
directories) and renamed to the next free repetition ``n`` at the end, so an
interrupted case never leaves a directory that looks whole, and a numbered
directory is always a complete case. A partial left by a process that is gone
is removed by the next case written beside it.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from fakesvc.cases.tables import CASE_FILE

PARTIAL = ".partial-"


def repetitions(parent: Path) -> list[int]:
    """The repetitions written in ``parent`` (numbered directories holding a ``case.json``), in order."""
    if not parent.is_dir():
        return []
    found = []
    for child in parent.iterdir():
        if child.name.isdecimal() and child.is_dir() and (child / CASE_FILE).is_file():
            found.append(int(child.name))
    return sorted(found)


def next_free(parent: Path) -> int:
    """The lowest repetition from 1 not yet taken (by a case or anything else of that name)."""
    n = 1
    while (parent / str(n)).exists():
        n += 1
    return n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_stale(parent: Path) -> None:
    """Remove the partial cases of processes that have ended (killed mid-case)."""
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if not child.name.startswith(PARTIAL):
            continue
        pid = child.name[len(PARTIAL) :].split("-", 1)[0]
        if pid.isdecimal() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(child, ignore_errors=True)


def new_partial(parent: Path) -> Path:
    """A fresh hidden directory in ``parent`` to write one case into."""
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent)
    partial = parent / f"{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
    partial.mkdir()
    return partial


def publish(partial: Path) -> Path:
    """Rename the finished case to its repetition, the next free one (another writer may take one first)."""
    parent = partial.parent
    while True:
        target = parent / str(next_free(parent))
        try:
            os.rename(partial, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or target.exists():
                continue  # taken in between
            raise
        return target
