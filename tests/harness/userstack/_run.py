"""The stack's cells: pytest on tests/matrix/test_cells.py per arm (agent on/off x
vanilla/patched), each arm's results beside every session's, and the grid they observed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from ..cells import ARMS
from ..cells import slug as cells_slug
from ..paths import ROOT
from ._env import REPORTED, Env
from ._predict import Arm, Observed
from ._registry import Json
from ._resolve import Plan


def session_name(name: str, agent: bool, fixed: bool) -> str:
    return f"stack({name}, agent={agent}, fixed={fixed})"


def pins_claimed(env_versions: dict[str, str | None]) -> list[str]:
    """pytest --pin options, the stack's own pins: the positive controls expect the server
    to report each (tests/harness/controls.py)."""
    return [f"{REPORTED[n]}=={v}" for n, v in env_versions.items() if n in REPORTED and v]


def run_cells(plan: Plan, env: Env, results: Path, jobs: int, out: TextIO | None = None
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
