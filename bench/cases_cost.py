"""What writing a case costs (issue #24): a 3-minute run of the shop at 20 checkouts/s, exported in RCAEval's layout.

``cd bench && python cases_cost.py`` plays the run once with ``supervisor.py`` (success-only
traffic, a cpu fault on cartservice for the middle minute, every signal to a private embedded
sink), then times ``python -m fakesvc.cases export`` of it and sums the files it wrote. The
baseline, measured in the same run, is the least any export of that run must do: copy the
sink's SQLite file. Targets: the export under 5 s and the case under 20 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, free_port

TARGET_S, TARGET_MB = 5.0, 20.0


def play(workdir: Path, rate: float, warmup_s: float, fault_s: float, recovery_s: float) -> Path:
    """One run of the shop with a cpu fault on cartservice after the warmup; its sink database."""
    rules = workdir / "rules.json"
    rules.write_text(json.dumps({"cartservice": [{"kind": "cpu", "start_s": warmup_s, "duration_s": fault_s}]}))
    db = workdir / "sink.db"
    port = free_port()
    command = [
        *(sys.executable, str(ROOT / "supervisor.py"), "--graph", "shop", "--base-port", "0"),
        *("--rate", str(rate), "--duration", str(warmup_s + fault_s + recovery_s), "--mix", "success=1"),
        *("--seed", "7", "--chaos", str(rules), "--quiet"),
        *("--truth", str(workdir / "truth.jsonl"), "--report", str(workdir / "report.json")),
        *("--sink", "on", "--sink-db", str(db), "--sink-port", str(port)),
        *("--prodsentinel-url", f"http://127.0.0.1:{port}", "--spill-dir", str(workdir / "spill")),
    ]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"the run failed ({done.returncode}): {done.stderr[-2000:]}")
    return db


def export(workdir: Path, db: Path) -> tuple[float, Path]:
    """``python -m fakesvc.cases export`` of the run: its wall time and the case it wrote."""
    out = workdir / "cases"
    began = time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fakesvc.cases", "export", "--sink-db", str(db)),
            *("--truth", str(workdir / "truth.jsonl"), "--report", str(workdir / "report.json"), "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"the export failed ({done.returncode}): {done.stderr[-2000:]}")
    return took, ROOT / done.stdout.strip().splitlines()[-1]  # the case's directory (an absolute one stays so)


def sizes(case: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in sorted(case.iterdir()) if path.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rate", type=float, default=20.0, help="checkouts a second (default 20)")
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="the run's length: a third each of warmup, fault, recovery"
    )
    parser.add_argument("--keep", type=Path, help="play into this directory and keep the run (to profile the export)")
    args = parser.parse_args()
    third = args.minutes * 60 / 3
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"playing the shop for {args.minutes:g} min at {args.rate:g} checkouts/s ...", file=sys.stderr)
        db = play(workdir, args.rate, third, third, third)
        began = time.perf_counter()
        shutil.copyfile(db, workdir / "copy.db")
        copy_s = time.perf_counter() - began
        db_mb = db.stat().st_size / 1e6
        export_s, case = export(workdir, db)
        files = sizes(case)
        case_mb = sum(files.values()) / 1e6
        rows = sum(1 for _ in (case / "data.csv").open()) - 1
    print(f"run: {args.minutes:g} min of the shop at {args.rate:g}/s, sink {db_mb:.1f} MB")
    print(f"export: {export_s:.2f} s (target < {TARGET_S:g} s); baseline, copying the sink: {copy_s:.3f} s")
    print(
        f"case: {case_mb:.2f} MB (target < {TARGET_MB:g} MB), {case_mb / db_mb:.3f} of the sink; data.csv {rows} rows"
    )
    for name, size in files.items():
        print(f"  {name:16} {size / 1e6:8.3f} MB")


if __name__ == "__main__":
    main()
