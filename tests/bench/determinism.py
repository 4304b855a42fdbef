"""``python -m tests.bench.determinism``: the full matrix N times; every cell that differs.

    python -m tests.bench.determinism                       # 5 runs, `nox` from PATH
    python -m tests.bench.determinism --runs 3 --nox ~/.local/bin/nox --out /tmp/det

Each run is ``nox -R -s matrix seed`` (environments reused, nothing installed)
with ``MATRIX_RESULTS`` pointing at ``<out>/run-<k>``, so runs never overwrite
each other or ``results/``.  Then, cell by cell (stack, agent, fixed, rum,
hello_goodbyer, streaming), it compares the verdict and, per client, the
verdict, the closed column (PEP 3333 close()) and the close-frame column, and
test by test (the JUnit files) the outcome of every other test.  Prints every
difference; exits 1 if any cell or test differs or a run lost a session.
Every run is bounded (--run-timeout); on expiry it gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.harness import records
from tests.harness.paths import ROOT
from tests.harness.records import SessionResults, session_rerun

RUNS = 5
RUN_TIMEOUT = 3600.0  # s for one full `nox -R -s matrix seed`
INTERRUPT_GRACE = 60.0  # s a timed-out run gets after its SIGTERM before it is killed
CLIENT_COLUMNS = ("verdict", "iterable_closed", "valid_close_frame")


def run_matrix(nox, results, log, timeout=RUN_TIMEOUT):
    """One full run into `results`; returns (exit status, seconds)."""
    results.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MATRIX_RESULTS=str(results))
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [nox, "-R", "-s", "matrix", "seed"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first (a Ctrl-C may be ignored in a background job): every
            # pytest stops its servers on it (tests/conftest.py), then a kill.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(INTERRUPT_GRACE)
            out.write(f"\n[determinism: run stopped after {timeout:.0f} s (bound)]\n")
            status = None
    return status, time.monotonic() - started


def environments():
    """{nox env: sha256 of its installed geventwebsocket}: a rebuild between runs shows."""
    import hashlib

    prints = {}
    for package in sorted(ROOT.glob(".nox/*/**/site-packages/geventwebsocket")):
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
        prints[
            str(package.relative_to(ROOT / ".nox")).split("/")[0]
            + ("/py27" if "/py27/" in str(package) else "")
        ] = digest.hexdigest()[:12]
    return prints


def cells_of(results):
    """{Cell: {"verdict": ..., "clients": {client: {column: value}}}} and session statuses."""
    cells, sessions = {}, {}
    for path in sorted(results.glob("*.json")):
        doc = records.read(path, SessionResults, session_rerun)
        sessions[doc.session] = doc.status
        for record in doc.cells:
            cells[record.cell] = {
                "verdict": record.verdict,
                "clients": {
                    o.client: {c: getattr(o, c) for c in CLIENT_COLUMNS} for o in record.observed
                },
            }
    return cells, sessions


def tests_of(results):
    """{(session file, test id): outcome} from the JUnit files."""
    outcomes = {}
    for path in sorted(results.glob("*.junit.xml")):
        try:
            tree = ET.parse(path)
        except ET.ParseError:
            continue
        for case in tree.iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag
            outcomes[(path.name, f"{case.get('classname')}::{case.get('name')}")] = outcome
    return outcomes


def compare(runs):
    """(every difference between runs as lines, the cells that differ); empty when all agree."""
    differences, flipped = [], set()
    all_sessions = sorted({s for run in runs for s in run["sessions"]})
    for session in all_sessions:
        statuses = [run["sessions"].get(session, "missing") for run in runs]
        if "missing" in statuses:
            differences.append(f"session {session}: results missing in some run: {statuses}")
    all_cells = sorted({k for run in runs for k in run["cells"]})
    for key in all_cells:
        seen = [run["cells"].get(key) for run in runs]
        if any(s is None for s in seen):
            flipped.add(key)
            differences.append(
                f"cell {key.label()}: missing in runs "
                f"{[i + 1 for i, s in enumerate(seen) if s is None]}"
            )
            continue
        verdicts = [s["verdict"] for s in seen]
        if len(set(verdicts)) > 1:
            flipped.add(key)
            differences.append(f"cell {key.label()}: verdict per run {verdicts}")
        for client in sorted({c for s in seen for c in s["clients"]}):
            for column in CLIENT_COLUMNS:
                values = [s["clients"].get(client, {}).get(column) for s in seen]
                if len(set(map(str, values))) > 1:
                    flipped.add(key)
                    differences.append(
                        f"cell {key.label()}, {client} client: {column} per run {values}"
                    )
    all_tests = sorted({t for run in runs for t in run["tests"]})
    for test in all_tests:
        outcomes = [run["tests"].get(test, "missing") for run in runs]
        if len(set(outcomes)) > 1:
            differences.append(f"test {test[0]} {test[1]}: {outcomes}")
    return differences, flipped


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.determinism", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--nox", default=shutil.which("nox") or "nox")
    parser.add_argument(
        "--out",
        default=str(ROOT / "results" / "determinism"),
        help="a results directory per run goes in here "
        "(default results/determinism, ignored by git)",
    )
    parser.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT)
    parser.add_argument(
        "--compare-only", action="store_true", help="compare the run-* directories already in --out"
    )
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    builds = environments()
    for k in range(1, args.runs + 1):
        results = out / f"run-{k}"
        if not args.compare_only:
            if results.exists():
                shutil.rmtree(results)
            status, took = run_matrix(args.nox, results, out / f"run-{k}.log", args.run_timeout)
            print(
                f"run {k}/{args.runs}: nox exit {status} in {took:.0f} s "
                f"(log {out / f'run-{k}.log'})",
                flush=True,
            )
        if not args.compare_only:
            now = environments()
            changed = sorted(e for e in set(builds) | set(now) if builds.get(e) != now.get(e))
            if changed:  # someone reinstalled an environment: differences may be theirs
                print(
                    f"run {k}: gevent-websocket changed in {changed} since the previous run",
                    flush=True,
                )
            builds = now
        cells, sessions = cells_of(results)
        runs.append({"cells": cells, "sessions": sessions, "tests": tests_of(results)})
        failed = sorted(s for s, st in sessions.items() if st != "passed")
        print(
            f"run {k}: {len(cells)} cells, {len(sessions)} sessions"
            + (f", not passed: {failed}" if failed else ""),
            flush=True,
        )
    differences, flipped = compare(runs)
    n_cells = len({k for run in runs for k in run["cells"]})
    print(
        f"\n{len(runs)} runs, {n_cells} cells: {len(flipped)} cell(s) differ between runs, "
        f"{sum(1 for d in differences if d.startswith('test '))} test(s) differ"
    )
    for line in differences:
        print("  " + line)
    (out / "determinism.json").write_text(
        json.dumps(
            {
                "runs": len(runs),
                "cells": n_cells,
                "flipped_cells": len(flipped),
                "differences": differences,
            },
            indent=1,
        )
        + "\n"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
