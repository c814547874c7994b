"""The field's root-cause methods (RCAEval's) on fakesvc's cases: AC@1, AC@3, Avg@5 beside a random ranking.

``cd bench && python methods.py SUITE_DIR [--methods baro,nsigma,...] [--venv .methods-venv] [--json OUT]``

A suite is RCAEval's RE2 layout: ``{service}_{fault}/{n}/data.csv`` (``time`` in epoch seconds, one
row a second, then ``<svc>_cpu``, ``<svc>_mem``, ``<svc>_latency-50``, ``<svc>_latency-90``,
``<svc>_workload``, ``<svc>_error`` per service), ``inject_time.txt`` and fakesvc's ``case.json``
(``root_cause_service``, ``fault`` with its ``fakesvc`` and ``rcaeval`` names, ``graph``, maybe ``entry``).

The methods run in a virtual environment of their own (``bench/.methods-venv``, made once from
``bench/methods_requirements.txt``), one subprocess per method that takes the cases in turn; a case
that runs past ``--timeout`` is killed and counted a failure, and the subprocess is started again
for the cases after it. This file itself needs the standard library only.

How a case is read follows RCAEval's ``main.py``: the ``_latency-50`` columns are dropped, infinities
become NaN, NaN is forward-filled then 0, the window is the last ``--length-s`` rows before the
injection and the first ``--length-s`` after it (RCAEval's default, 600 and 600), ``_latency-90`` is
renamed ``_latency``. One difference: ``main.py`` passes as SLI the root cause's own latency column
(``f"{service}_latency"``, the service read from the case's directory name), which hands the answer
to every method that uses it (CloudRanger, MicroCause, EasyRCA). Here the SLI is the entry service's
latency (``case.json``'s ``entry``, else the first service of ``data.csv``), what an operator sees.

RCAEval wraps CIRCA and the PageRank / random-walk methods in ``@rca``, which on any exception returns
the columns in file order as if it were a ranking. Here that wrapper is replaced by one that lets the
exception through, so a method that fails on a case is counted as a failure with its error. ``mmcirca``
does the same inside itself (a failed PC returns the columns as the ranking): the runner watches its
``pc_default`` and raises what it raised.

The multi-source methods (``mmbaro``, ``mmnsigma``, ``mmcirca``) get what ``main.py``'s ``process``
builds for them: a dict of ``metric`` (the window above, a DataFrame at one row a second), ``logts``,
``tracets_err``, ``tracets_lat`` (the case's ``logts.csv``, ``tracets_err.csv``, ``tracets_lat.csv``
as read, 15 s buckets, cut to the last ``length * 4 // 2`` rows before the injection and the first
after it: ``--length-s // 15``, 40 by default), with ``dataset`` ``"re2-ob"`` (``--mm-dataset``):
``mmnsigma``/``mmbaro`` use the ``tracets_*`` files only for the RE2/RE3 OB and TT names, and the
other methods' ``"fakesvc"`` would leave them out. ``main.py`` needs ``logts.csv`` and skips missing
trace files; here a case without any of the three is a failure that names them (fakesvc writes all
three, so a missing one is an older or broken case).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "methods_requirements.txt"
DEFAULT_VENV = HERE / ".methods-venv"
STAMP = "methods-install.json"
NO_DEPS_MARK = "# no-deps:"
KS = (1, 2, 3, 4, 5)
TORCH_NAMES = ("torch", "nvidia-", "triton")

# name -> (file under RCAEval/e2e/, function, what it needs beyond numpy/pandas/scikit-learn)
METHODS: dict[str, tuple[str, str, str]] = {
    "baro": ("baro.py", "baro", "-"),
    "nsigma": ("__init__.py", "nsigma", "-"),
    "e_diagnosis": ("__init__.py", "e_diagnosis", "PyRCA"),
    "circa": ("circa.py", "circa", "causal-learn (PC), networkx"),
    "pc_pagerank": ("pc_pagerank.py", "pc_pagerank", "causal-learn (PC), scikit-network"),
    "granger_pagerank": ("granger_pagerank.py", "granger_pagerank", "statsmodels, networkx"),
    "pc_randomwalk": ("pc_randomwalk.py", "pc_randomwalk", "causal-learn (PC), networkx"),
    "fci_pagerank": ("fci_pagerank.py", "fci_pagerank", "causal-learn (FCI)"),
    "lingam_pagerank": ("lingam_pagerank.py", "lingam_pagerank", "causal-learn (DirectLiNGAM)"),
    "ges_pagerank": ("ges_pagerank.py", "ges_pagerank", "causal-learn (GES)"),
    "cloudranger": ("cloudranger.py", "cloudranger", "causal-learn, pingouin; uses the SLI"),
    "microcause": ("microcause.py", "microcause", "tigramite (PCMCI), pingouin; uses the SLI"),
    "easyrca": ("easyrca.py", "easyrca", "tigramite, pingouin; uses the SLI"),
    "ht": ("__init__.py", "ht", "PyRCA (PC + hypothesis testing)"),
    "dummy": ("__init__.py", "dummy", "- (RCAEval's own random ranking of metrics)"),
    "mmbaro": ("baro.py", "mmbaro", "-; multi-source: logts.csv, tracets_err.csv, tracets_lat.csv"),
    "mmnsigma": ("baro.py", "mmnsigma", "-; multi-source: logts.csv, tracets_err.csv, tracets_lat.csv"),
    "mmcirca": ("circa.py", "mmcirca", "causal-learn (PC), networkx; multi-source: logts.csv (no traces)"),
}
# RCAEval's main.py builds a dict of DataFrames for these instead of passing the metrics table
MULTI_SOURCE = ("mmbaro", "mmnsigma", "mmcirca")
MULTI_SOURCE_FILES = ("logts.csv", "tracets_err.csv", "tracets_lat.csv")
# not run, and why: shown with the results so the table's gaps are explained
NOT_RUN = {
    "causalrca": "needs torch (kept out of the venv: no torch/CUDA)",
    "run": "needs torch",
    "rcd": "needs Python 3.8 and RCAEval's patched causal-learn (its 'rcd' environment)",
    "mmrcd": "multi-source RCD: needs Python 3.8 and RCAEval's patched causal-learn, as rcd",
}
DEFAULT_METHODS = (
    "baro,nsigma,e_diagnosis,circa,pc_pagerank,granger_pagerank,pc_randomwalk,fci_pagerank,lingam_pagerank,cloudranger,"
    "mmbaro,mmnsigma"
)
BASELINES = ("random", "analyser")

# Runs inside the methods' venv: `python RUNNER JOB.json`. Its stdout carries one JSON line per
# event and nothing else (whatever the methods print goes to stderr).
RUNNER = r'''
import ast, importlib.util, json, os, random, sys, time, traceback, types, warnings
warnings.filterwarnings("ignore")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


def emit(**event):
    out.write(json.dumps(event) + "\n")
    out.flush()


job = json.load(open(sys.argv[1]))


def rca(func):
    """RCAEval's @rca returns the columns in file order when a method raises: let the error through."""
    return func


def load(file, name):
    import RCAEval
    e2e_dir = os.path.join(os.path.dirname(RCAEval.__file__), "e2e")
    # importing RCAEval.e2e itself imports every method, torch's too: stand in for it
    if "RCAEval.e2e" not in sys.modules:
        stub = types.ModuleType("RCAEval.e2e")
        stub.__path__ = [e2e_dir]
        stub.rca = rca
        sys.modules["RCAEval.e2e"] = stub
        RCAEval.e2e = stub
    path = os.path.join(e2e_dir, file)
    if file == "__init__.py":
        # functions defined in the package's __init__: take its absolute imports and that function only
        tree = ast.parse(open(path).read(), path)
        keep = [n for n in tree.body if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.level == 0)]
        keep += [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
        module = types.ModuleType("RCAEval.e2e._init_" + name)
        module.__file__ = path
        exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), module.__dict__)
        return getattr(module, name)
    modname = "RCAEval.e2e." + file[:-3]
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    if name == "mmcirca" and hasattr(module, "pc_default"):
        # mmcirca answers a failed PC with the columns in file order: keep the error to raise it
        inner = module.pc_default

        def pc_default(*args, **kwargs):
            try:
                return inner(*args, **kwargs)
            except BaseException as exc:
                swallowed.append(exc)
                raise

        module.pc_default = pc_default
    return getattr(module, name)


swallowed = []


def first_line(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


try:
    started = time.monotonic()
    func = load(job["file"], job["function"])
    import argparse
    import numpy as np
    import pandas as pd
except BaseException as exc:
    emit(event="load_error", error=first_line(exc), trace=traceback.format_exc()[-2000:])
    sys.exit(3)
emit(event="loaded", seconds=round(time.monotonic() - started, 3))


def read_case(case):
    data = pd.read_csv(case["data"])
    data = data.loc[:, ~data.columns.str.endswith("_latency-50")]
    data = data.replace([np.inf, -np.inf], np.nan).ffill().fillna(0)
    inject = case["inject_time"]
    length = job["length"]
    normal = data[data["time"] < inject].tail(length)
    anomal = data[data["time"] >= inject].head(length)
    data = pd.concat([normal, anomal], ignore_index=True)
    if job["drop_duplicates"]:
        data = data.loc[:, ~data.T.duplicated().to_numpy()]
    return data.rename(columns={c: c[: -len("-90")] for c in data.columns if c.endswith("_latency-90")})


def cut(frame, inject, rows):
    """main.py's cut of a 15 s file: the last `rows` rows before the injection, the first `rows` from it."""
    normal = frame[frame["time"] < inject].tail(rows)
    anomal = frame[frame["time"] >= inject].head(rows)
    return pd.concat([normal, anomal], ignore_index=True)


def read_multi_source(case, metric):
    """The dict main.py's process() passes to mmbaro / mmnsigma / mmcirca."""
    folder = os.path.dirname(case["data"])
    missing = [n for n in job["mm_files"] if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise FileNotFoundError(
            f"no {', '.join(missing)} in the case: the multi-source files (cases made before fakesvc wrote them have none)"
        )
    frames = {n: pd.read_csv(os.path.join(folder, n)) for n in job["mm_files"]}
    rows = job["mm_rows"]
    inject = case["inject_time"]
    return {
        "metric": metric.copy(deep=True),
        "logts": cut(frames["logts.csv"], inject, rows),
        "tracets_err": cut(frames["tracets_err.csv"], inject, rows),
        "tracets_lat": cut(frames["tracets_lat.csv"], inject, rows),
    }


def name_of(item):
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if hasattr(item, "entity") and hasattr(item, "metric"):
        return f"{item.entity}_{item.metric}"
    return str(item)


for index, case in enumerate(job["cases"]):
    emit(event="begin", index=index)
    started = time.monotonic()
    try:
        random.seed(job["seed"])
        np.random.seed(job["seed"])
        data = read_case(case)
        n_iter = len(data.columns) - 1
        if job["multi_source"]:
            data = read_multi_source(case, data)
        run_args = argparse.Namespace(root_path=os.getcwd(), data_path=case["data"])
        swallowed.clear()
        result = func(
            data,
            case["inject_time"],
            dataset=job["dataset"],
            anomalies=None,
            dk_select_useful=False,
            sli=case["sli"],
            verbose=False,
            n_iter=n_iter,
            args=run_args,
        )
        if swallowed:
            raise swallowed[0]
        ranks = [name_of(item) for item in result["ranks"]]
        emit(event="done", index=index, ranks=ranks, seconds=round(time.monotonic() - started, 3))
    except BaseException as exc:
        emit(event="done", index=index, error=first_line(exc), trace=traceback.format_exc()[-2000:],
             seconds=round(time.monotonic() - started, 3))
'''


@dataclass
class Case:
    """One case of the suite and what is known of it without reading its data."""

    id: str
    dir: Path
    root: str
    fault: str
    rcaeval_fault: str
    graph: str
    services: list[str]
    entry: str
    inject_time: int

    @property
    def sli(self) -> str:
        return f"{self.entry}_latency"


@dataclass
class Outcome:
    """One method on one case: the services in its order, or its failure."""

    services: list[str] = field(default_factory=list)
    raw_top: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None

    def rank_of(self, answer: str) -> int | None:
        return self.services.index(answer) + 1 if answer in self.services else None


def services_of(columns: Sequence[str]) -> list[str]:
    """The services of a ``data.csv`` header, in column order (a column is ``<svc>_<metric>``)."""
    seen: list[str] = []
    for column in columns:
        if column == "time" or "_" not in column:
            continue
        service = column.rsplit("_", 1)[0]
        if service not in seen:
            seen.append(service)
    return seen


def load_suite(suite: Path) -> list[Case]:
    cases = []
    for data in sorted(suite.rglob("data.csv")):
        case_dir = data.parent
        meta: dict[str, Any] = {}
        if (case_dir / "case.json").is_file():
            meta = json.loads((case_dir / "case.json").read_text())
        with open(data, newline="") as handle:
            header = next(csv.reader(handle))
        services = services_of(header)
        named_service, _, named_fault = case_dir.parent.name.rpartition("_")
        root = meta.get("root_cause_service") or named_service
        # case.json's fault holds its fakesvc and RCAEval names
        fault: dict[str, Any] = meta["fault"] if isinstance(meta.get("fault"), dict) else {}
        entry = meta.get("entry") if meta.get("entry") in services else services[0]
        inject = int(float((case_dir / "inject_time.txt").read_text().split()[0]))
        cases.append(
            Case(
                id=str(case_dir.relative_to(suite)),
                dir=case_dir,
                root=root,
                fault=fault.get("fakesvc") or named_fault,
                rcaeval_fault=fault.get("rcaeval") or named_fault,
                graph=meta.get("graph") or "?",
                services=services,
                entry=str(entry),
                inject_time=inject,
            )
        )
    return cases


def to_services(ranks: Iterable[str], services: Sequence[str]) -> list[str]:
    """A ranking of ``<svc>_<metric>`` columns (or services) as services, each at its first appearance.

    The multi-source columns are ``<svc>_<template id>`` and ``<svc>_<operation>``, an operation that
    may hold ``_`` itself (``{item_id}``): a column belongs to the longest service it starts with.
    """
    longest_first = sorted(services, key=len, reverse=True)
    out: list[str] = []
    for item in ranks:
        service = item if item in services else next((s for s in longest_first if item.startswith(s + "_")), None)
        if service is not None and service not in out:
            out.append(service)
    return out


# ---- the methods' venv ----


def requirement_lines(path: Path) -> tuple[list[str], list[str]]:
    """(the lines pip installs with their dependencies, the ``# no-deps:`` ones)."""
    normal, no_deps = [], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith(NO_DEPS_MARK):
            no_deps.append(line[len(NO_DEPS_MARK) :].strip())
        elif line and not line.startswith("#"):
            normal.append(line)
    return normal, no_deps


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def pip(python: Path, args: list[str], log: Path) -> bool:
    with open(log, "a") as handle:
        handle.write(f"\n$ pip {' '.join(args)}\n")
        handle.flush()
        done = subprocess.run(
            [str(python), "-m", "pip", "--disable-pip-version-check", *args], stdout=handle, stderr=subprocess.STDOUT
        )
    return done.returncode == 0


def ensure_venv(venv: Path, *, reinstall: bool) -> dict[str, Any]:
    """The methods' venv, made and filled once; again when the requirements file changes."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp_path = venv / STAMP
    if reinstall and venv.exists():
        shutil.rmtree(venv)
    if stamp_path.is_file() and venv_python(venv).exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("requirements_sha256") == digest:
            return dict(stamp, reused=True)
    venv.mkdir(parents=True, exist_ok=True)
    log = venv / "install.log"
    log.write_text("")
    say(f"making the methods' venv {venv} (log: {log}) ...")
    started = time.monotonic()
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv_python(venv)
    normal, no_deps = requirement_lines(REQUIREMENTS)
    failed: list[str] = []
    if not pip(python, ["install", "-q", "-r", str(REQUIREMENTS)], log):
        say("installing the requirements together failed; trying each one alone")
        for line in normal:
            if not pip(python, ["install", "-q", line], log):
                failed.append(line)
    for line in no_deps:
        if not pip(python, ["install", "-q", "--no-deps", line], log):
            failed.append(f"{line} (--no-deps)")
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout or "[]")}
    torch_like = sorted(name for name in installed if name.startswith(TORCH_NAMES))
    stamp = {
        "requirements_sha256": digest,
        "python": subprocess.run([str(python), "-V"], capture_output=True, text=True).stdout.strip(),
        "install_seconds": round(time.monotonic() - started, 1),
        "size_mb": round(dir_size(venv) / 1e6, 1),
        "failed_to_install": failed,
        "torch_like_packages": torch_like,
        "packages": len(installed),
        "rcaeval": installed.get("rcaeval"),
    }
    stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    return dict(stamp, reused=False)


# ---- running a method on the cases ----


def run_method(
    method: str,
    cases: list[Case],
    python: Path,
    runner: Path,
    *,
    timeout: float,
    length: int,
    seed: int,
    drop_duplicates: bool,
    mm_dataset: str = "re2-ob",
) -> tuple[dict[str, Outcome], str | None]:
    """Every case's outcome for one method, and the method's load error if it could not be imported."""
    file, function, _needs = METHODS[method]
    outcomes: dict[str, Outcome] = {}
    todo = list(cases)
    load_error: str | None = None
    while todo:
        with tempfile.TemporaryDirectory(prefix=f"methods-{method}-") as tmp:
            job_path = Path(tmp) / "job.json"
            job = {
                "file": file,
                "function": function,
                "seed": seed,
                "length": length,
                "drop_duplicates": drop_duplicates,
                # main.py: args.length * 60 // 2 rows a side of the 1 s table, args.length * 4 // 2 of the 15 s files
                "multi_source": method in MULTI_SOURCE,
                "mm_files": list(MULTI_SOURCE_FILES),
                "mm_rows": length // 15,
                "dataset": mm_dataset if method in MULTI_SOURCE else "fakesvc",
                "cases": [{"data": str(c.dir / "data.csv"), "inject_time": c.inject_time, "sli": c.sli} for c in todo],
            }
            job_path.write_text(json.dumps(job))
            err_path = Path(tmp) / "stderr"
            with open(err_path, "w") as err:
                proc = subprocess.Popen(
                    [str(python), str(runner), str(job_path)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    start_new_session=True,
                    env=dict(os.environ, PYTHONHASHSEED=str(seed), OMP_NUM_THREADS="1", MPLBACKEND="Agg"),
                )
                events: queue.Queue[dict[str, Any] | None] = queue.Queue()

                def read(stream: Any = proc.stdout, sink: queue.Queue[dict[str, Any] | None] = events) -> None:
                    for line in stream:
                        try:
                            sink.put(json.loads(line))
                        except ValueError:
                            continue
                    sink.put(None)

                threading.Thread(target=read, daemon=True).start()
                current: int | None = None
                finished = 0
                deadline = time.monotonic() + 300  # importing a method's stack
                reason: str | None = None
                while True:
                    try:
                        event = events.get(timeout=max(0.1, deadline - time.monotonic()))
                    except queue.Empty:
                        reason = f"timeout after {timeout:g} s" if current is not None else "timeout loading"
                        break
                    if event is None:
                        break
                    kind = event.get("event")
                    if kind == "load_error":
                        load_error = event.get("error") or "load error"
                    elif kind == "begin":
                        current = int(event["index"])
                        deadline = time.monotonic() + timeout
                    elif kind == "done":
                        index = int(event["index"])
                        ranks = [str(r) for r in event.get("ranks") or []]
                        outcomes[todo[index].id] = Outcome(
                            services=to_services(ranks, todo[index].services),
                            raw_top=ranks[:5],
                            error=event.get("error"),
                            seconds=event.get("seconds"),
                        )
                        finished = index + 1
                        current = None
                        if finished == len(todo):
                            deadline = time.monotonic() + 30
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                code = proc.wait()
            if load_error is not None:
                for case in todo:
                    outcomes[case.id] = Outcome(error=f"not loadable: {load_error}")
                return outcomes, load_error
            if finished == len(todo):
                return outcomes, None
            stuck = todo[finished]
            if reason is None:
                tail = [line for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
                reason = f"runner died (exit {code})" + (f": {tail[-1][:200]}" if tail else "")
            outcomes[stuck.id] = Outcome(error=reason, seconds=timeout if reason.startswith("timeout after") else None)
            todo = todo[finished + 1 :]
    return outcomes, None


def random_baseline(cases: list[Case], seed: int) -> dict[str, Outcome]:
    """Each case's services in a seeded random order."""
    outcomes = {}
    for case in cases:
        order = list(case.services)
        random.Random(f"{seed}:{case.id}").shuffle(order)
        outcomes[case.id] = Outcome(services=order, raw_top=order[:5], seconds=0.0)
    return outcomes


def analyser_vote(case: Case) -> tuple[list[str] | None, str]:
    """HOOK: fakesvc's reference analyser as one vote per case, or None and why not.

    ``python -m fakesvc.analyse`` judges each checkout of a truth file from the signals a sink
    stored, one JSON line ``{"trace_id", "services": [ranked], "kind"}`` per checkout judged an
    incident. A case's vote reads such lines from ``predictions.jsonl`` in the case's directory:
    services ordered by how many lines put them first, then by their mean place. The lead may wire
    the call itself (the sink's data is not part of a case today).
    """
    predictions = case.dir / "predictions.jsonl"
    if not predictions.is_file():
        if (case.dir / "truth.jsonl").is_file():
            return None, "truth.jsonl but no predictions.jsonl (the sink's data is not in the case)"
        return None, "no predictions.jsonl"
    firsts: Counter[str] = Counter()
    places: dict[str, list[int]] = defaultdict(list)
    for line in predictions.read_text().splitlines():
        if not line.strip():
            continue
        named = [s for s in json.loads(line).get("services") or [] if isinstance(s, str)]
        if named:
            firsts[named[0]] += 1
        for place, service in enumerate(named, 1):
            places[service].append(place)
    order = sorted(places, key=lambda s: (-firsts[s], sum(places[s]) / len(places[s]), s))
    return order, f"{sum(firsts.values())} incident lines"


# ---- scoring ----


def score(cases: list[Case], outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """AC@1..5 and Avg@5 over the cases; a failed or missing case is a miss, and counted in ``fails``."""
    n = len(cases)
    hits = dict.fromkeys(KS, 0)
    fails = 0
    seconds = []
    for case in cases:
        outcome = outcomes.get(case.id)
        if outcome is None or outcome.error is not None:
            fails += 1
            continue
        if outcome.seconds is not None:
            seconds.append(outcome.seconds)
        place = outcome.rank_of(case.root)
        for k in KS:
            hits[k] += int(place is not None and place <= k)
    ac = {k: hits[k] / n if n else 0.0 for k in KS}
    return {
        "n": n,
        "fails": fails,
        **{f"AC@{k}": round(ac[k], 4) for k in KS},
        "Avg@5": round(sum(ac.values()) / len(KS), 4),
        "mean_s": round(sum(seconds) / len(seconds), 3) if seconds else None,
    }


def chance(cases: list[Case]) -> dict[str, Any]:
    """What a uniformly random ranking of each case's services reaches on average."""
    n = len(cases)
    ac = {k: sum(min(k, len(c.services)) / len(c.services) for c in cases) / n if n else 0.0 for k in KS}
    return {"n": n, "fails": 0, **{f"AC@{k}": round(ac[k], 4) for k in KS}, "Avg@5": round(sum(ac.values()) / 5, 4)}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None, allow_abbrev=False)
    parser.add_argument("suite", type=Path, help="a suite directory: {service}_{fault}/{n}/data.csv ...")
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"comma-separated, or 'all' (known: {', '.join(METHODS)})"
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the methods' venv (made when missing)")
    parser.add_argument("--reinstall", action="store_true", help="remove the venv and make it again")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one method may take on one case")
    parser.add_argument("--length-s", type=int, default=600, help="rows kept each side of the injection")
    parser.add_argument("--seed", type=int, default=0, help="numpy/random seed for the methods and the random baseline")
    parser.add_argument(
        "--drop-duplicate-columns",
        action="store_true",
        help="drop a column equal to an earlier one in the window (not RCAEval's protocol): "
        "services that see every request have equal workload columns, and PC's Fisher-z test fails on them",
    )
    parser.add_argument(
        "--mm-dataset",
        default="re2-ob",
        help="the dataset name the multi-source methods get (main.py's --dataset); mmbaro/mmnsigma read the "
        "tracets_* files only for re2-ob, re2-tt, re3-ob, re3-tt, mm-ob, mm-tt",
    )
    parser.add_argument("--jobs", type=int, default=1, help="methods run at once (one process each)")
    parser.add_argument("--json", type=Path, help="write every figure and each case's outcome here")
    args = parser.parse_args(argv)

    methods = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS and m not in BASELINES]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    methods = [m for m in methods if m not in BASELINES]
    cases = load_suite(args.suite)
    if not cases:
        parser.error(f"no */*/data.csv under {args.suite}")
    say(f"{len(cases)} cases in {args.suite}")

    install = ensure_venv(args.venv.resolve(), reinstall=args.reinstall) if methods else {}
    if install:
        how = "reused" if install["reused"] else f"installed in {install['install_seconds']} s"
        say(f"venv {args.venv}: {install['python']}, {install['packages']} packages, {install['size_mb']} MB, {how}")
        for line in install["failed_to_install"]:
            say(f"  failed to install: {line}")
        if install["torch_like_packages"]:
            say(f"  WARNING: torch-like packages in the venv: {', '.join(install['torch_like_packages'])}")

    results: dict[str, dict[str, Outcome]] = {}
    load_errors: dict[str, str | None] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="methods-runner-") as tmp:
        runner = Path(tmp) / "runner.py"
        runner.write_text(RUNNER)
        python = venv_python(args.venv.resolve())

        def one(method: str) -> None:
            started = time.monotonic()
            say(f"{method}: {len(cases)} cases ...")
            outcomes, load_error = run_method(
                method,
                cases,
                python,
                runner,
                timeout=args.timeout,
                length=args.length_s,
                seed=args.seed,
                drop_duplicates=args.drop_duplicate_columns,
                mm_dataset=args.mm_dataset,
            )
            results[method], load_errors[method] = outcomes, load_error
            wall[method] = round(time.monotonic() - started, 1)
            failed = sum(1 for o in outcomes.values() if o.error)
            say(f"{method}: done in {wall[method]} s, {failed} failed" + (f" ({load_error})" if load_error else ""))

        pending = list(methods)
        threads: list[threading.Thread] = []
        while pending or threads:
            threads = [t for t in threads if t.is_alive()]
            while pending and len(threads) < max(1, args.jobs):
                thread = threading.Thread(target=one, args=(pending.pop(0),))
                thread.start()
                threads.append(thread)
            if threads:
                threads[0].join(timeout=0.5)

    results["random"] = random_baseline(cases, args.seed)
    analyser: dict[str, Outcome] = {}
    analyser_notes: Counter[str] = Counter()
    for case in cases:
        order, note = analyser_vote(case)
        analyser_notes[note if order is None else "voted"] += 1
        if order is not None:
            analyser[case.id] = Outcome(services=to_services(order, case.services), raw_top=order[:5])
    shown = [*methods, "random"]
    if analyser:
        results["analyser"] = {c.id: analyser.get(c.id, Outcome(error="no analyser vote for this case")) for c in cases}
        shown.append("analyser")

    groups: dict[str, dict[str, list[Case]]] = {"all": {"all": cases}, "fault": {}, "graph": {}}
    for case in cases:
        groups["fault"].setdefault(case.fault, []).append(case)
        groups["graph"].setdefault(case.graph, []).append(case)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for dimension, by in groups.items():
        summary[dimension] = {}
        for group, members in sorted(by.items()):
            summary[dimension][group] = {m: score(members, results[m]) for m in shown}
            summary[dimension][group]["chance"] = chance(members)

    print(f"# Root-cause methods on {args.suite} ({len(cases)} cases)")
    print(
        "SLI given to the methods: the entry service's latency-90 column, not the root cause's own "
        "(RCAEval's main.py passes the root cause's, which leaks the answer). Services ranked by first appearance."
    )
    print(
        f"Window: {args.length_s} rows each side of the injection; "
        + (
            "columns equal to an earlier one dropped (--drop-duplicate-columns, not RCAEval's protocol)."
            if args.drop_duplicate_columns
            else "every column kept, as RCAEval does."
        )
    )
    if any(m in MULTI_SOURCE for m in methods):
        print(
            f"Multi-source ({', '.join(m for m in methods if m in MULTI_SOURCE)}): data.csv's window plus "
            f"{', '.join(MULTI_SOURCE_FILES)}, {args.length_s // 15} rows of 15 s each side, dataset "
            f"{args.mm_dataset!r}; a case without them is a failure."
        )
    print("A failure counts as a miss; 'fails' counts them. 'chance' is a uniform random ranking's expectation.\n")
    for dimension in ("all", "fault", "graph"):
        rows = [["method", dimension, "n", "AC@1", "AC@3", "Avg@5", "fails", "s/case"]]
        for group, by_method in summary[dimension].items():
            for method in [*shown, "chance"]:
                s = by_method[method]
                mean_s = s.get("mean_s")
                rows.append(
                    [
                        method,
                        group,
                        str(s["n"]),
                        f"{s['AC@1']:.2f}",
                        f"{s['AC@3']:.2f}",
                        f"{s['Avg@5']:.2f}",
                        str(s["fails"]),
                        f"{mean_s:.2f}" if isinstance(mean_s, float) else "-",
                    ]
                )
        print(f"## by {dimension}" if dimension != "all" else "## all cases")
        print(table(rows))
        print()

    print("## failures (first line of each error, by method)")
    any_failure = False
    for method in shown:
        errors = Counter(o.error for o in results[method].values() if o.error)
        for error, count in errors.most_common():
            any_failure = True
            print(f"{method}: {count} x {error}")
    if not any_failure:
        print("none")
    print()
    print("## not run")
    for name, why in NOT_RUN.items():
        print(f"{name}: {why}")
    unavailable = {m: e for m, e in load_errors.items() if e}
    for name, why in unavailable.items():
        print(f"{name}: could not be imported in the venv: {why}")
    if not analyser:
        print(f"analyser (fakesvc's reference analyser, a vote per case): {', '.join(sorted(analyser_notes))}")
    else:
        print(f"analyser: {dict(analyser_notes)}")

    if args.json:
        report = {
            "suite": str(args.suite),
            "cases": [
                {
                    "id": c.id,
                    "root_cause_service": c.root,
                    "fault": c.fault,
                    "rcaeval_fault": c.rcaeval_fault,
                    "graph": c.graph,
                    "services": len(c.services),
                    "sli": c.sli,
                }
                for c in cases
            ],
            "settings": {
                "length_s": args.length_s,
                "timeout_s": args.timeout,
                "seed": args.seed,
                "drop_duplicate_columns": args.drop_duplicate_columns,
                "mm_dataset": args.mm_dataset,
                "mm_rows": args.length_s // 15,
            },
            "venv": {"path": str(args.venv), **install},
            "methods": {
                m: {
                    "needs": METHODS[m][2] if m in METHODS else "-",
                    "load_error": load_errors.get(m),
                    "wall_s": wall.get(m),
                    "per_case": {
                        cid: {"services": o.services[:5], "raw_top": o.raw_top, "error": o.error, "seconds": o.seconds}
                        for cid, o in results[m].items()
                    },
                }
                for m in shown
            },
            "not_run": NOT_RUN,
            "analyser_notes": dict(analyser_notes),
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
