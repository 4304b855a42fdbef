"""The stack's cells: pytest on tests/matrix/test_cells.py per arm (agent on/off x
vanilla/patched), each arm's results beside every session's, and the grid they observed;
``serve`` is a whole run of a stack, from its plan to the grids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..builds import PATCHES
from ..cells import ARMS
from ..cells import slug as cells_slug
from ..paths import ROOT
from ._env import REPORTED, Env, build
from ._predict import Arm, Observed, prediction_grid, print_grid
from ._registry import Json
from ._request import GWS, MATTERS, Request
from ._resolve import Plan, describe, make_plan


def session_name(name: str, agent: bool, fixed: bool) -> str:
    return f"stack({name}, agent={agent}, fixed={fixed})"


def pins_claimed(env_versions: dict[str, str | None]) -> list[str]:
    """pytest --pin options, the stack's own pins: the positive controls expect the server
    to report each (tests/harness/controls.py)."""
    return [f"{REPORTED[n]}=={v}" for n, v in env_versions.items() if n in REPORTED and v]


def run_cells(
    plan: Plan, env: Env, results: Path, jobs: int, out: TextIO | None = None
) -> dict[Arm, Json]:
    """pytest on the cells per arm; {(agent, fixed): results document}."""
    out = out or sys.stdout
    arms = [(a, f) for a, f in ARMS if not f or env.patched]
    results.mkdir(parents=True, exist_ok=True)

    def one(arm: Arm) -> tuple[Arm, Json]:
        agent, fixed = arm
        name = session_name(plan.request.name, agent, fixed)
        slug = cells_slug(name)
        (results / f"{slug}.json").unlink(missing_ok=True)  # never read a previous run's
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
            "tests/matrix/test_cells.py",
            "--stack",
            plan.request.name,
            "--agent" if agent else "--no-agent",
            "--fixed" if fixed else "--no-fixed",
            "--server-python",
            str(env.python),
            "--session-name",
            name,
            "--results",
            str(results / f"{slug}.json"),
            "--junitxml",
            str(results / f"{slug}.junit.xml"),
            "--server-logs",
            str(results / f"{slug}.logs"),
            *(a for pin in pins_claimed(env.versions) for a in ("--pin", pin)),
        ]
        environ = dict(os.environ)
        if fixed:
            environ["PYTHONPATH"] = os.pathsep.join(
                [str(env.patched)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
            )
        started = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=900, check=False
        )
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
                verdict,
                closed,
            )
    return grid


@dataclass
class Served:
    """A stack's run: what the model read of its server, and each arm's results."""

    name: str
    versions: dict[str, str]  # the model's inputs (_predict.model_versions), as installed
    installed: dict[str, str]  # canonical name -> version: everything in the server env
    docs: dict[Arm, Json]  # (agent, fixed) -> the arm's results document
    failed: list[str]  # the sessions whose pytest failed


def serve(
    request: Request,
    python: str | None,
    work: Path,
    results: Path,
    jobs: int,
    started: float | None = None,
) -> Served:
    """The stack planned, built (or reused), smoke-tested and its cells run, each step
    printed, then the model's grid and the observed one beside it (`nox -s stack`).
    A StackError before any cell runs: bad input, or a stack that cannot be served."""
    started = time.monotonic() if started is None else started
    plan = make_plan(request, python)
    describe(plan)
    env = build(plan, work)
    print(
        f"  environment {env.path} ({'reused' if env.reused else 'built'} in "
        f"{time.monotonic() - started:.1f} s): "
        + " ".join(f"{k}=={v}" for k, v in sorted(env.versions.items()))
    )
    for line in env.hash_lines():
        print(f"  {line}")
    if plan.python_version == "2.7":  # pip resolved in the environment: say what it chose
        for name in MATTERS:
            if not request.exact(name) and env.installed.get(name):
                print(
                    f"  chose {name}=={env.installed[name]}: pip's choice for Python 2.7 "
                    "under the era's caps"
                )
    if not env.patched:
        print(
            f"  no patch series for gevent-websocket {plan.gws} (patches/{GWS}/ has "
            f"{', '.join(sorted(p.name for p in PATCHES.iterdir()))}): vanilla only"
        )
    env.smoke()
    versions = {
        GWS: plan.gws,
        "newrelic": env.versions.get("newrelic") or "0",
        **({"gevent": g} if (g := env.versions.get("gevent")) else {}),
    }
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if not arm[1] or env.patched}
    print_grid(
        f"model: {request.name} (gevent-websocket {plan.gws}, newrelic {versions['newrelic']})",
        rows,
        versions,
    )
    docs = run_cells(plan, env, results, jobs)
    print_grid(
        f"observed: {request.name} on Python {plan.python_version} (beside the model: "
        "! marks a disagreement)",
        rows,
        versions,
        observed=observed_grid(docs),
    )
    failed = [
        session_name(request.name, *arm) for arm, doc in docs.items() if doc.get("pytest_exit") != 0
    ]
    cells = sum(len(d.get("cells", [])) for d in docs.values())
    print(
        f"{cells} cells in {time.monotonic() - started:.1f} s; results in {results}"
        + (f"; failed: {', '.join(failed)} (see *.pytest.log there)" if failed else ""),
        flush=True,
    )
    return Served(request.name, versions, env.installed, docs, failed)
