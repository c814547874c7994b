"""``index.csv`` and ``index.json``: every complete case under an output directory, one row each.

Rebuilt from the case directories themselves (their ``case.json``), so it is
right after an interrupted or resumed suite, and written to a temporary file
then renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fakesvc.cases import layout, tables

INDEX_CSV, INDEX_JSON = "index.csv", "index.json"
INDEX_COLUMNS = (
    "case",
    "service",
    "fault",
    "fakesvc_kind",
    "repetition",
    "inject_time",
    "rows",
    "first_time",
    "last_time",
    "graph",
    "seed",
    "run_id",
    "supervisor_status",
    "stalled_seconds",
)


def entries(out: Path) -> list[dict[str, Any]]:
    """One entry per complete case in ``out``, sorted by directory then repetition."""
    found = []
    for parent in sorted(path for path in out.iterdir() if path.is_dir() and not path.name.startswith(".")):
        for n in layout.repetitions(parent):
            try:
                case = json.loads((parent / str(n) / tables.CASE_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            harness = case.get("harness") or {}
            found.append(
                {
                    "case": f"{parent.name}/{n}",
                    "service": case.get("root_cause_service"),
                    "fault": (case.get("fault") or {}).get("rcaeval"),
                    "fakesvc_kind": (case.get("fault") or {}).get("fakesvc"),
                    "repetition": n,
                    "inject_time": case.get("inject_time"),
                    "rows": case.get("rows"),
                    "first_time": case.get("first_time"),
                    "last_time": case.get("last_time"),
                    "graph": case.get("graph"),
                    "seed": case.get("seed"),
                    "run_id": case.get("run_id"),
                    "supervisor_status": harness.get("supervisor_status"),
                    "stalled_seconds": len(harness.get("stalled_seconds") or []),
                }
            )
    return found


def write_index(out: Path) -> list[dict[str, Any]]:
    """Rewrite both index files of ``out``; the entries written."""
    found = entries(out)
    json_tmp = out / f".{INDEX_JSON}.tmp"
    json_tmp.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    os.replace(json_tmp, out / INDEX_JSON)
    csv_tmp = out / f".{INDEX_CSV}.tmp"
    tables.write_csv(csv_tmp, INDEX_COLUMNS, ([entry[column] for column in INDEX_COLUMNS] for entry in found))
    os.replace(csv_tmp, out / INDEX_CSV)
    return found
