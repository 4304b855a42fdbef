"""The stack's cells: pytest on tests/matrix/test_cells.py per arm (agent on/off x
vanilla/patched), and on tests/matrix/test_layers.py per layer the pins set up and build,
each run's results beside every session's, and the grids they observed; ``serve`` is a
whole run of a stack, from its plan to the grids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..builds import PATCHES
from ..cells import ARMS, BOOLS
from ..cells import slug as cells_slug
from ..cells_pytest import CELLS_PATH, LAYERS_PATH, CellsRun, child_command
from ..paths import ROOT
from ._env import REPORTED, Env, build
from ._errors import StackError
from ._predict import (
    Arm,
    LayerArm,
    LayerObserved,
    Observed,
    grid_title,
    layer_grid,
    prediction_grid,
    print_grid,
    print_layer_grid,
    unproven,
)
from ._registry import Json
from ._request import GWS, MATTERS, Request
from ._resolve import Plan, describe, make_plan


def session_name(name: str, agent: bool, fixed: bool, handler: str = GWS) -> str:
    """An arm of a user stack; on another handler as `nox -s "handler(...)"` names its own
    (its one build in place of vanilla/patched)."""
    if handler != GWS:
        return f"stack({name}, handler={handler}, agent={agent})"
    return f"stack({name}, agent={agent}, fixed={fixed})"


def layer_session_name(name: str, layer: str, fixed: bool, handler: str = GWS) -> str:
    """A user stack's run of one layer's cells, as `nox -s "layer(...)"` names its own
    (on another handler, as a handler session names its layers' runs)."""
    if handler != GWS:
        return f"stack({name}, handler={handler}, layer={layer})"
    return f"stack({name}, layer={layer}, fixed={fixed})"


def handler_claims(plan: Plan) -> dict[str, Any]:
    """What a run on another handler claims beside the pins: the handler, and its release
    (the positive controls expect the server to describe that one)."""
    if plan.handler == GWS:
        return {}
    return {"handler": plan.handler, "pins": [f"{plan.handler}=={plan.handler_version}"]}


def pins_claimed(env_versions: Mapping[str, str | None]) -> list[str]:
    """pytest --pin options, the stack's own pins: the positive controls expect the server
    to report each (tests/harness/controls.py)."""
    return [f"{REPORTED[n]}=={v}" for n, v in env_versions.items() if n in REPORTED and v]


Key = TypeVar("Key", bound=Hashable)


def run_all(runs: dict[Key, CellsRun], patched: Path | None, jobs: int) -> dict[Key, Json]:
    """Each pytest run of cells, ``jobs`` at once; {key: its results document}.  A patched
    run has the patched build first on PYTHONPATH."""
    out = sys.stdout

    def one(key: Key) -> tuple[Key, Json]:
        run = runs[key]
        run.results.unlink(missing_ok=True)  # never read a previous run's
        environ = dict(os.environ)
        if run.fixed and patched:
            environ["PYTHONPATH"] = os.pathsep.join(
                [str(patched)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
            )
        started = time.monotonic()
        proc = subprocess.run(
            child_command(run),
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        run.results.with_suffix(".pytest.log").write_text(proc.stdout + proc.stderr)
        try:
            doc = json.loads(run.results.read_text())
        except (OSError, ValueError):
            doc = {"cells": []}
        doc["pytest_exit"] = proc.returncode
        doc["wall"] = round(time.monotonic() - started, 2)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
        print(
            f"  {run.name}: pytest exit {proc.returncode} in {doc['wall']} s: {tail[0]}", file=out
        )
        return key, doc

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(pool.map(one, runs))


def cells_run(
    env: Env, results: Path, name: str, path: str, agent: bool, fixed: bool, **claims: Any
) -> CellsRun:
    """One pytest run of a user stack's cells, its results beside every session's."""
    results.mkdir(parents=True, exist_ok=True)
    slug = cells_slug(name)
    return CellsRun(
        paths=[path],
        stack=claims.pop("stack"),
        agent=agent,
        fixed=fixed,
        server_python=env.python,
        results=results / f"{slug}.json",
        logs=results / f"{slug}.logs",
        name=name,
        junit=results / f"{slug}.junit.xml",
        **claims,
    )


def stack_runs(plan: Plan, env: Env, results: Path, agent: bool = True) -> dict[Arm, CellsRun]:
    """The cells of each arm (agent on/off x vanilla/patched; ``agent`` False: off only)."""
    stack = plan.request.name
    claims = handler_claims(plan)
    return {
        (a, f): cells_run(
            env,
            results,
            session_name(stack, a, f, plan.handler),
            CELLS_PATH,
            a,
            f,
            stack=stack,
            handler=claims.get("handler"),
            pins=[*pins_claimed(env.versions), *claims.get("pins", [])],
        )
        for a, f in ARMS
        if (not f or env.patched) and (agent or not a)
    }


def layer_runs(plan: Plan, env: Env, results: Path, layers: list[str]) -> dict[LayerArm, CellsRun]:
    """Each layer's cells on each build, as `nox -s "layer(...)"` runs its own: the layer
    set up as its docs say, its release the pinned one."""
    stack = plan.request.name
    claims = handler_claims(plan)
    return {
        (layer, f): cells_run(
            env,
            results,
            layer_session_name(stack, layer, f, plan.handler),
            LAYERS_PATH,
            False,
            f,
            stack=stack,
            layer=layer,
            handler=claims.get("handler"),
            pins=[
                *pins_claimed(env.versions),
                *claims.get("pins", []),
                f"{plan.layers[layer]}=={env.installed[plan.layers[layer]]}",
            ],
        )
        for layer in layers
        for f in BOOLS
        if not f or env.patched
    }


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


def observed_layer_grid(docs: Mapping[bool, Json]) -> LayerObserved:
    """{fixed: {(hello_goodbyer, streaming): (verdict, layer_finished, server_closed_tcp)}},
    "~" where the clients disagree."""
    grid: LayerObserved = {}
    for fixed, doc in docs.items():
        for record in doc.get("cells", []):
            c = record["cell"]
            seen = [
                {o[k] for o in record["observed"]}
                for k in ("verdict", "layer_finished", "server_closed_tcp")
            ]
            verdict, finished, tcp = (v.pop() if len(v) == 1 else "~" for v in seen)
            grid.setdefault(fixed, {})[(c["hello_goodbyer"], c["streaming"])] = (
                verdict,
                finished,
                tcp,
            )
    return grid


def served_layers(plan: Plan, env: Env) -> list[str]:
    """The plan's layers whose setup serves a page here (one line each, as for the layers
    that cannot run on this stack)."""
    served = []
    for layer in plan.layers:
        failure = env.start_failure(layer)
        if failure:
            plan.cannot_run[layer] = f"set up as its docs say, the server {failure}"
        else:
            served.append(layer)
    for layer, why in plan.cannot_run.items():
        print(f"  layer {layer} cannot run on this stack: {why}")
    for layer in served:
        print(
            f"  layer {layer}: {plan.layers[layer]}=={env.installed[plan.layers[layer]]}, "
            "set up as its docs say, its transport an in-process capture: its cells on "
            "each build below"
        )
    return served


@dataclass
class Served:
    """A stack's run: what the model read of its server, and each arm's results."""

    name: str
    versions: dict[str, str]  # the model's inputs (_predict.model_versions), as installed
    installed: dict[str, str]  # canonical name -> version: everything in the server env
    docs: dict[Arm, Json]  # (agent, fixed) -> the arm's results document
    failed: list[str]  # the sessions whose pytest failed
    # (layer, fixed) -> the results document of a layer's cells on that build
    layer_docs: dict[LayerArm, Json] = field(default_factory=dict)


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
    try:
        env = build(plan, work)
    except StackError as exc:
        if not plan.layers:
            raise
        # The stack is served without its layers, each of which gets the reason.
        why = f"installing it with the stack failed ({' '.join(str(exc).split())[:300]})"
        cannot_run = {**plan.cannot_run, **dict.fromkeys(plan.layers, why)}
        plan = make_plan(request, python, with_layers=False)
        plan.cannot_run.update(cannot_run)
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
    if not env.patched and plan.handler == GWS:
        print(
            f"  no patch series for gevent-websocket {plan.gws} (patches/{GWS}/ has "
            f"{', '.join(sorted(p.name for p in PATCHES.iterdir()))}): vanilla only"
        )
    env.smoke()
    layers = served_layers(plan, env)
    # The agent is a layer too: where it cannot start or never becomes active (newrelic
    # 1.x's developer mode still needs the collector), its arms would observe nothing.
    agent_failure = env.start_failure(agent=True) if env.versions.get("newrelic") else None
    if agent_failure:
        print(
            f"  the agent (newrelic=={env.versions['newrelic']}) cannot run on this stack: "
            f"the server {agent_failure}: its arms are not run"
        )
    versions = {
        plan.handler: plan.handler_version,
        "newrelic": env.versions.get("newrelic") or "0",
        **{
            k: v
            for k, n in (("gevent", "gevent"), ("Werkzeug", "werkzeug"))
            if (v := env.versions.get(n))
        },
    }
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if not arm[1] or env.patched}
    if note := unproven(versions):
        print(f"  note: {note}")
    print_grid(grid_title(request.name, versions), rows, versions)
    builds = [f for f in BOOLS if not f or env.patched]
    runs: dict[Arm | LayerArm, CellsRun] = {}
    for some in (
        stack_runs(plan, env, results, agent=agent_failure is None),
        layer_runs(plan, env, results, layers),
    ):
        runs.update(some.items())
    done = run_all(runs, env.patched, jobs)
    docs: dict[Arm, Json] = {k: d for k, d in done.items() if isinstance(k[0], bool)}
    print_grid(
        f"observed: {request.name} on Python {plan.python_version} (beside the model: "
        "! marks a disagreement)",
        rows,
        versions,
        observed=observed_grid(docs),
    )
    for layer in layers:
        name = plan.layers[layer]
        print_layer_grid(
            f"layer {layer} ({name}=={env.installed[name]}), observed beside the model",
            layer_grid(request.name, layer, versions, builds),
            observed=observed_layer_grid({f: done[(layer, f)] for f in builds}),
            handler=plan.handler,
        )
    failed = [runs[k].name or "" for k, doc in done.items() if doc.get("pytest_exit") != 0]
    cells = sum(len(d.get("cells", [])) for d in done.values())
    print(
        f"{cells} cells in {time.monotonic() - started:.1f} s; results in {results}"
        + (f"; failed: {', '.join(failed)} (see *.pytest.log there)" if failed else ""),
        flush=True,
    )
    layer_docs = {k: d for k, d in done.items() if isinstance(k[0], str)}
    return Served(request.name, versions, env.installed, docs, failed, layer_docs)
