"""``nox -s bench`` runs this: every benchmark, then report/bench.{json,md}.

1. throughput (tests/bench/throughput.py), ~25 s;
2. where a server's start goes (tests/bench/profile_start.py), agent off and on;
3. the matrix's wall time and the per-cell distribution (tests/bench/matrix_time.py):
   cold installs with uv and with pip, then one warm run of every cell, ~2 min;
4. the main job as a new user meets it (tests/bench/main_job.py): plain `nox` on a
   fresh clone (cold), `nox -R` (warm), and both concurrency levers off, ~3 min;
   with ``-- --ci`` also `nox -t ci` on a fresh clone (what .ci/run runs, minutes).

5. a user stack with one layer (tests/bench/stack_time.py): `nox -s stack` cold (its env
   and uv's cache deleted first) and warm, minutes.

6. each handler of [tool.handlers] against patched gevent-websocket (tests/bench/
   handler_cost.py): echo throughput and the per-cell phases, as ratios, ~2 min.

``-- --quick`` skips the nox runs (throughput and profile only); ``-- --only stack``
runs step 5 alone (report/bench-stack.*); ``-- --only main-job`` step 4 alone
(report/bench-main-job.*), where ``--vs REV`` pairs each run with the same run at REV
(before -> after) and ``--empty-caches`` starts cold runs with empty package caches;
``-- --only handlers`` runs step 6 alone and writes its figures into report/bench.json
(``"handlers"``, which the which-handler table reads) and bench.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.bench import handler_cost, main_job, matrix_time, report, stack_time, throughput
from tests.harness.paths import ROOT
from tests.harness.records import SCHEMA

PROFILE_TIMEOUT = 60  # s for one profiled server start (bound)


def profile(python, out_dir):
    found = {}
    for label, flags in (("agent off", []), ("agent on", ["--agent"])):
        out = out_dir / f"bench-profile-{label.replace(' ', '-')}.txt"
        proc = subprocess.run(
            [python, "-m", "tests.bench.profile_start", *flags, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PROFILE_TIMEOUT,
            check=False,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            found[label] = {"error": (proc.stderr or proc.stdout)[-1000:]}
            continue
        found[label] = json.loads(lines[-1])
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run")
    parser.add_argument(
        "--python",
        required=True,
        help="today's server interpreter (vanilla gevent-websocket, the agent, pyinstrument)",
    )
    parser.add_argument("--patched-path", required=True)
    parser.add_argument("--work", required=True, help="scratch: envdir, results, logs")
    parser.add_argument("--nox", required=True, help="how to run nox (split like a shell)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="no nox runs")
    parser.add_argument("--ci", action="store_true", help="also time `nox -t ci` (minutes)")
    parser.add_argument(
        "--only",
        choices=["stack", "handlers", "main-job"],
        default=None,
        help="one step alone: stack (`nox -s stack`, cold and warm), "
        "handlers (into the existing bench.json), main-job (step 4)",
    )
    main_job.add_options(parser)
    parser.add_argument(
        "--handler",
        dest="handlers",
        action="append",
        default=[],
        type=handler_cost.handler_option,
        help="NAME=PYTHON: a handler's server env (step 6)",
    )
    parser.add_argument(
        "--load-before",
        default=None,
        help="1/5/15-minute load before the session began (comma-separated)",
    )
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "handlers":
        found = handler_cost.measure(
            args.python,
            args.patched_path,
            dict(args.handlers),
            args.rounds,
            args.seconds,
            100000,
            handler_cost.MANY,
            handler_cost.CELL_ROUNDS,
            work / "handlers-logs",
        )
        handler_cost.write(out / "bench.json", found)
        print(handler_cost.render(found))
        print(f'written: {out / "bench.json"} ("handlers"), {out / "bench.md"}')
        return 0
    started = time.monotonic()
    doc = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load": {
            "session_start": [float(v) for v in args.load_before.split(",")]
            if args.load_before
            else None,
            "before": list(os.getloadavg()),
        },
        "targets": report.TARGETS,
        "notes": [],
    }
    step = {}

    def timed(name, fn, *a, **kw):
        t0 = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        result = fn(*a, **kw)
        step[name] = round(time.monotonic() - t0, 1)
        print(f"bench: {name} took {step[name]} s", flush=True)
        return result

    if args.only is None:
        doc["throughput"] = timed(
            "throughput",
            throughput.measure,
            args.python,
            args.patched_path,
            args.rounds,
            args.seconds,
            100000,
            work / "throughput-logs",
        )
        doc["profile"] = timed("profile", profile, args.python, out)
    if not args.quick and args.only is None:
        doc["matrix"] = timed(
            "matrix",
            matrix_time.measure,
            shlex.split(args.nox),
            work / "envs",
            work / "results",
            work / "report",
            work / "logs",
        )
        doc["cells"] = report.cell_stats(work / "results")
    if not args.quick and args.only in (None, "main-job"):
        doc["main_job"] = timed(
            "main job", main_job.run, shlex.split(args.nox), work / "main-job", args
        )
        if "cells_results" in doc["main_job"]:
            doc["main_job"]["cells"] = report.cell_stats(doc["main_job"]["cells_results"])
    if not args.quick and args.only in (None, "stack"):
        doc["stack"] = timed("stack", stack_time.measure, shlex.split(args.nox), work / "stack")
    if args.handlers and args.only is None:
        doc["handlers"] = timed(
            "handlers",
            handler_cost.measure,
            args.python,
            args.patched_path,
            dict(args.handlers),
            args.rounds,
            args.seconds,
            100000,
            handler_cost.MANY,
            handler_cost.CELL_ROUNDS,
            work / "handlers-logs",
        )
    doc["steps"] = step
    doc["wall"] = round(time.monotonic() - started, 1)
    doc["load"]["after"] = list(os.getloadavg())
    # the report reads the figures as written (tests/harness/inputs.py), of this schema
    doc.update(schema=SCHEMA, figures=report.figures(doc))
    # One step alone must not overwrite the whole bench's figures, which the report reads.
    name = f"bench-{args.only}" if args.only else "bench"
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{name}.md").write_text(report.render(doc))
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
