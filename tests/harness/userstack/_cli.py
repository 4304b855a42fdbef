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
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from packaging.utils import canonicalize_name

from ..builds import PATCHES
from ..cells import ARMS, ROOT
from ..cells import slug as cells_slug
from ..pythons import MissingPython, find_python
from ._era import choose_python, era_of, this_python
from ._errors import EXIT_BAD_INPUT, StackError, installer_failure
from ._predict import Arm, Observed, prediction_grid, print_grid, run_predict
from ._registry import Json, Registry
from ._request import (
    GWS,
    LAST_GWS,
    LAYER_PREFIXES,
    LAYERS,
    MATTERS,
    SERVER_NEEDS,
    Request,
    from_args,
)

if TYPE_CHECKING:
    from ._env import Env

# The names the server reports (app/__main__.py versions()), which --release must match.
REPORTED = {"gevent": "gevent", "greenlet": "greenlet", "flask": "Flask",
            "werkzeug": "Werkzeug", "newrelic": "newrelic", GWS: GWS}
BUILD_TOOLS = ("setuptools", "wheel")
SETUPTOOLS_FLOOR = "40.8.0"  # uv's PEP 517 fallback for a setup.py asks for >= this


@dataclass
class Plan:
    request: Request
    python_version: str
    python: str  # the interpreter found for python_version
    era: dt.datetime | None  # uploads after this are not chosen
    why_python: str
    why_era: str = ""
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version, resolved
    choices: list[str] = field(default_factory=list)  # what was filled in, and why
    gws_files: list[Json] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)  # what the environment installs
    constraints: list[str] = field(default_factory=list)  # 2.7: pip's cap at the era
    uv_dates: list[str] = field(default_factory=list)  # 3.x: uv's cap at the era

    @property
    def gws(self) -> str:
        return self.pins[GWS]


# -- 4. filling in what the file leaves out ----------------------------------------------


def resolver_input(request: Request) -> tuple[list[str], list[str]]:
    """(requirements for the resolver, notes on what was added)."""
    reqs = [str(r) for n, r in request.requirements.items()
            if n != GWS and n not in LAYERS and not n.startswith(LAYER_PREFIXES)]
    added = []
    for need in SERVER_NEEDS:
        if need not in request.requirements:
            reqs.append(need)
            added.append(need)
    return reqs, added


def uv() -> str:
    import shutil

    found = shutil.which("uv")
    if not found:
        raise StackError("uv is not on PATH (it resolves and installs the stack); "
                         "`python -m pip install uv`, or run through nox")
    return found


def resolve(plan: Plan, registry: Registry) -> None:
    """Fill plan.pins with the whole server environment, and plan.choices with why."""
    request = plan.request
    reqs, added = resolver_input(request)
    gws = request.exact(GWS)
    if gws is None:
        if GWS in request.requirements:
            raise StackError(f"{request.requirements[GWS]}: the handler under test must be "
                             f"pinned exactly; write {GWS}==X.Y (e.g. {LAST_GWS})")
        gws = LAST_GWS
        plan.choices.append(f"{GWS}=={gws}: not in the file; its last release (2017), "
                            "the one users run")
    plan.gws_files = registry.check(GWS, gws)
    if plan.python_version == "2.7":
        # uv cannot resolve for CPython 2.7: pip does, in the environment itself
        # (stackenv), capped at the era by constraints on the packages that matter.
        plan.pins = {GWS: gws}
        plan.constraints = era_constraints(plan, registry)
        plan.requirements = reqs
        for need in added:
            plan.choices.append(f"{need}: not in the file; pip chooses the newest release "
                                f"that admits Python 2.7{_era_note(plan)}")
        return
    plan.uv_dates = era_args(plan, registry)
    # --python: the interpreter itself builds any sdist the resolver must read (else uv
    # builds it with its own, e.g. MarkupSafe 1.0's setup.py under 3.11 for a 3.7 stack).
    cmd = [uv(), "pip", "compile", "-", "--quiet", "--no-header", "--annotation-style", "line",
           "--python-version", plan.python_version, "--python", plan.python, "--no-config",
           *plan.uv_dates]
    proc = subprocess.run(cmd, input="\n".join(reqs) + "\n", capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise StackError(installer_failure(proc.stderr, f"resolving the stack for Python "
                                           f"{plan.python_version}{_era_note(plan)}"))
    pins = {GWS: gws}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s*(?:#\s*(.*))?$", line.strip())
        if not m:
            continue
        name, version, via = canonicalize_name(m[1]), m[2], (m[3] or "").strip()
        pins[name] = version
        if request.exact(name) is None:
            reason = ("not in the file, needed by the app" if name in added else
                      f"{via}" if via else "a dependency")
            plan.choices.append(f"{name}=={version}: {reason}; the newest that fits Python "
                                f"{plan.python_version} and the pins{_era_note(plan)}")
    plan.pins = pins
    plan.requirements = [f"{n}=={v}" for n, v in pins.items() if n != GWS]


def era_args(plan: Plan, registry: Registry) -> list[str]:
    """uv's --exclude-newer for the era, for the resolver and the installer alike.

    The build tools get the era's releases too (MarkupSafe 1.0's setup.py imports
    setuptools.Feature, gone since 46), but none older than uv's floor for a legacy
    setup.py (setuptools >= 40.8.0, its PEP 517 fallback): a 2018 sdist builds with that.
    """
    if plan.era is None:
        return []
    floor = registry.uploaded("setuptools", SETUPTOOLS_FLOOR) + dt.timedelta(days=1)
    tools = max(plan.era, floor).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ["--exclude-newer", plan.era.strftime("%Y-%m-%dT%H:%M:%SZ"),
            *(a for tool in BUILD_TOOLS for a in ("--exclude-newer-package", f"{tool}={tools}"))]


def _era_note(plan: Plan) -> str:
    return f", uploaded before {plan.era.date()}" if plan.era else ""


def era_constraints(plan: Plan, registry: Registry) -> list[str]:
    """``name<=V`` for the packages that matter and are not pinned: pip's exclude-newer."""
    if plan.era is None:
        return []
    out = []
    for name in MATTERS:
        if name == GWS or plan.request.exact(name):
            continue
        newest = registry.newest_before(name, plan.era, plan.python_version)
        if newest:
            out.append(f"{name}<={newest}")
    return out


def make_plan(request: Request, asked_python: str | None) -> Plan:
    registry = Registry()
    for name, version in request.pinned().items():
        registry.check(name, version)
    era, why_era = era_of(request, registry)
    version, why = choose_python(request, registry, asked_python, era)
    try:
        python = sys.executable if version == this_python() and not asked_python else \
            find_python(version)
    except MissingPython as exc:
        raise StackError(str(exc)) from None
    plan = Plan(request=request, python_version=version, python=python, era=era,
                why_python=why, why_era=why_era)
    resolve(plan, registry)
    return plan


def describe(plan: Plan, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    r = plan.request
    print(f"stack {r.name}: " + " ".join(str(q) for q in r.requirements.values()), file=out)
    for line in r.ignored:
        print(f"  ignored: {line}", file=out)
    for layer in r.layers():
        print(f"  layer {r.requirements[layer]}: read, not yet served (its cells come with "
              "the layers of issue 19)", file=out)
    print(f"  python {plan.python_version} ({plan.python}): {plan.why_python}", file=out)
    print(f"  era: releases uploaded before {plan.era.date() if plan.era else 'today'} "
          f"({plan.why_era})", file=out)
    for line in plan.choices:
        print(f"  chose {line}", file=out)
    for line in plan.constraints:
        print(f"  capped {line} (the era's newest admitting Python 2.7)", file=out)


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
        from ._env import build

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
