"""Your stack: the cells, the model and the causes for the versions a user runs (issue 20).

    python -m tests.harness.userstack -r requirements.txt [--python X.Y] [--predict]
    python -m tests.harness.userstack Flask==1.1.4 gevent==20.9.0 [--python X.Y] [--predict]

1. the pins that matter are taken from the file (the others are listed as ignored);
2. each exact pin is checked against the registry (a release that does not exist is
   an error), and the newest upload among them dates the stack's era;
3. a Python is chosen (``--python``, else this interpreter if the pins have it, else the
   newest one here that every pinned binary release has a wheel for) and found the way
   the seed's 2.7 is (tests/harness/pythons.py);
4. what the file leaves out is filled in by a resolver: ``uv pip compile`` for that
   Python with ``--exclude-newer`` the era's date (so greenlet is one the pinned gevent
   could have been built against, Jinja2 one of that Flask's time); on CPython 2.7,
   which uv cannot target, pip resolves, capped at the era's releases by constraints;
   every choice is printed with its reason;
5. the environment is built in a temporary directory and renamed into place only once
   complete (_env.py); the gevent-websocket release is the verified
   sdist, vanilla and, where ``patches/gevent-websocket/<version>/`` exists, patched;
6. the cells run (tests/matrix/test_cells.py, agent on/off x vanilla/patched) and the grid
   is printed beside the model's prediction, with the causes.

``--predict`` stops after step 1: the model's grid from the pins alone, no network.
Bad input is one line ``error: <cause>; <fix>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..builds import PATCHES
from ..cells import ARMS, ROOT
from ..cells import slug as cells_slug
from ._env import Env, build
from ._errors import EXIT_BAD_INPUT, StackError
from ._predict import Arm, Observed, prediction_grid, print_grid, run_predict
from ._registry import Json
from ._request import GWS, MATTERS, from_args
from ._resolve import Plan, describe, make_plan

# The names the server reports (app/__main__.py versions()), which --release must match.
REPORTED = {"gevent": "gevent", "greenlet": "greenlet", "flask": "Flask",
            "werkzeug": "Werkzeug", "newrelic": "newrelic", GWS: GWS}


# -- 5-6. build and run ------------------------------------------------------------------


def session_name(name: str, agent: bool, fixed: bool) -> str:
    return f"stack({name}, agent={agent}, fixed={fixed})"


def pins_claimed(env_versions: dict[str, str | None]) -> list[str]:
    """pytest --pin options, the stack's own pins: the positive controls expect the server
    to report each (tests/matrix/test_cells.py positive_controls)."""
    return [f"{REPORTED[n]}=={v}" for n, v in env_versions.items() if n in REPORTED and v]


def run_cells(plan: Plan, env: Env, results: Path, jobs: int, out: TextIO | None = None
              ) -> dict[Arm, Json]:
    """pytest on the cells per arm; {(agent, fixed): results document}."""
    out = out or sys.stdout
    from concurrent.futures import ThreadPoolExecutor

    arms = [(a, f) for a, f in ARMS if not f or env.patched]
    results.mkdir(parents=True, exist_ok=True)

    def one(arm: Arm) -> tuple[Arm, Json]:
        agent, fixed = arm
        name = session_name(plan.request.name, agent, fixed)
        slug = cells_slug(name)
        (results / f"{slug}.json").unlink(missing_ok=True)  # never read a previous run's
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
               "tests/matrix/test_cells.py", "--stack", plan.request.name,
               "--agent" if agent else "--no-agent", "--fixed" if fixed else "--no-fixed",
               "--server-python", str(env.python), "--session-name", name,
               "--results", str(results / f"{slug}.json"),
               "--junitxml", str(results / f"{slug}.junit.xml"),
               "--server-logs", str(results / f"{slug}.logs"),
               *(a for pin in pins_claimed(env.versions) for a in ("--pin", pin))]
        environ = dict(os.environ)
        if fixed:
            environ["PYTHONPATH"] = os.pathsep.join(
                [str(env.patched)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True,
                              timeout=900, check=False)
        (results / f"{slug}.pytest.log").write_text(proc.stdout + proc.stderr)
        try:
            doc = json.loads((results / f"{slug}.json").read_text())
        except (OSError, ValueError):
            doc = {"cells": []}
        doc["pytest_exit"] = proc.returncode
        doc["wall"] = round(time.monotonic() - started, 2)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
        print(f"  {name}: pytest exit {proc.returncode} in {doc['wall']} s: {tail[0]}", file=out)
        return arm, doc

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(pool.map(one, arms))


def observed_grid(docs: dict[Arm, Json]) -> Observed:
    grid: Observed = {}
    for arm, doc in docs.items():
        for record in doc.get("cells", []):
            c = record["cell"]
            closed = all(o.get("iterable_closed", True) for o in record["observed"])
            verdicts = {o["verdict"] for o in record["observed"]}
            verdict = verdicts.pop() if len(verdicts) == 1 else "~"
            grid.setdefault(arm, {})[(c["rum"], c["hello_goodbyer"], c["streaming"])] = (
                verdict, closed)
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.userstack",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("pins", nargs="*", metavar="NAME==VERSION")
    parser.add_argument("-r", "--requirement", metavar="FILE")
    parser.add_argument("--python", metavar="X.Y", help="the Python the server runs on "
                        "(default: this one, if the pins admit it)")
    parser.add_argument("--predict", action="store_true",
                        help="the model's grid and causes only: build and run nothing")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "stacks",
                        help="where environments are built (kept: a second run reuses them)")
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="where each arm's SessionResults go, beside every session's "
                        "(nox passes MATRIX_RESULTS)")
    parser.add_argument("--jobs", type=int, default=2, help="arms run at once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        request = from_args(args.pins, args.requirement)
        if args.python and not re.fullmatch(r"\d+\.\d+", args.python):
            raise StackError(f"--python {args.python!r} is not a version X.Y; name one, e.g. "
                             "--python 3.8")
        if args.predict:
            return run_predict(request)
        plan = make_plan(request, args.python)
        describe(plan)
        env = build(plan, args.work)
        print(f"  environment {env.path} ({'reused' if env.reused else 'built'} in "
              f"{time.monotonic() - started:.1f} s): "
              + " ".join(f"{k}=={v}" for k, v in sorted(env.versions.items())))
        if plan.python_version == "2.7":  # pip resolved in the environment: say what it chose
            for name in MATTERS:
                if not request.exact(name) and env.installed.get(name):
                    print(f"  chose {name}=={env.installed[name]}: pip's choice for Python 2.7 "
                          "under the era's caps")
        if not env.patched:
            print(f"  no patch series for gevent-websocket {plan.gws} (patches/{GWS}/ has "
                  f"{', '.join(sorted(p.name for p in PATCHES.iterdir()))}): vanilla only")
        env.smoke()
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    results = args.results
    versions = {GWS: plan.gws, "newrelic": env.versions.get("newrelic") or "0"}
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if not arm[1] or env.patched}
    print_grid(f"model: {request.name} (gevent-websocket {plan.gws}, newrelic "
               f"{versions['newrelic']})", rows, versions)
    docs = run_cells(plan, env, results, args.jobs)
    print_grid(f"observed: {request.name} on Python {plan.python_version} (beside the model: "
               "! marks a disagreement)", rows, versions, observed=observed_grid(docs))
    failed = [session_name(request.name, *arm) for arm, doc in docs.items()
              if doc.get("pytest_exit") != 0]
    cells = sum(len(d.get("cells", [])) for d in docs.values())
    print(f"{cells} cells in {time.monotonic() - started:.1f} s; results in {results}"
          + (f"; failed: {', '.join(failed)} (see *.pytest.log there)" if failed else ""))
    return 1 if failed else 0
