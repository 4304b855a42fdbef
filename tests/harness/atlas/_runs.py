"""The atlas's runs: the plan's stacks chosen (a shard, a sample, some ids), each served by
the user-stack command in a process of its own, its outcome written beside its results:
results/atlas/<id>/outcome.json."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ..cells import Cell
from ..paths import CACHE, RESULTS, ROOT
from ..records import agrees
from ..userstack._errors import StackError
from ..userstack._registry import Registry
from ._plan import PLAN, Plan, PlanStack

ATLAS_RESULTS = RESULTS / "atlas"
OUTCOME = "outcome.json"
FAILED_TESTS = "_failed_tests"  # set on a session's document as it is read: pytest's count
STACKS_AT_ONCE = 2  # the machine's cores: each stack runs one pytest at a time
STACK_TIMEOUT = 3600.0  # s: a stack's build and its cells, all arms and layers
CANNOT_RUN = "cannot run on this stack"  # the user-stack command's line for a layer or the agent
RAN, CANNOT_BUILD, CRASHED = "ran", "cannot-build", "crashed"


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N), 1 <= K <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise StackError(
            f"--shard {text!r} is not K/N with 1 <= K <= N; write e.g. --shard 1/4 (shard 1 of 4)"
        )
    return int(m[1]), int(m[2])


def select(
    plan: Plan,
    shard: tuple[int, int] | None = None,
    sample: int | None = None,
    only: Sequence[str] = (),
    source: Path = PLAN,
) -> list[PlanStack]:
    """The stacks to run, in plan order: shard K of N (stack i where i % N == K-1), the
    first ``sample`` (the plan's order: one per era, then most new pairs first), or the
    ``only`` ids of the plan read from ``source``; the whole plan otherwise."""
    stacks = plan.stacks
    if shard:
        k, n = shard
        stacks = [s for i, s in enumerate(stacks) if i % n == k - 1]
    if sample is not None:
        if sample < 1:
            raise StackError(f"--sample {sample}: run at least one stack; write e.g. --sample 3")
        stacks = stacks[:sample]
    if only:
        ids = [s.id for s in plan.stacks]
        unknown = [i for i in only if i not in ids]
        if unknown:
            some = ", ".join(ids[:5]) + (f" ... ({len(ids)} stacks)" if len(ids) > 5 else "")
            raise StackError(
                f"--only {','.join(unknown)}: no such stack in {source.name}; name some of {some}"
            )
        stacks = [s for s in stacks if s.id in only]
    return stacks


def check_pins(stacks: Sequence[PlanStack], registry: Registry) -> None:
    """Each pin a release the registry has (StackError naming the first that is not)."""
    for stack in stacks:
        for name, version in stack.pins.items():
            try:
                registry.check(name, version)
            except StackError as exc:
                raise StackError(f"stack {stack.id}: {exc}") from None


def failed_controls(record: dict[str, Any]) -> list[str]:
    """The positive controls a cell failed (tests/harness/controls.py): the server is not
    what the cell claims (the agent never active, a layer not set up), so what its clients
    saw is no observation of that cell, for or against the model."""
    return sorted(name for name, ok in (record.get("controls") or {}).items() if not ok)


def not_served(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per session, the controls its cells failed: what this stack cannot serve (a result
    with its reason, as a stack that cannot be built is), with the cells' count."""
    found = []
    for doc in docs:
        failing = [failed_controls(r) for r in doc.get("cells", []) if failed_controls(r)]
        if failing:
            names = sorted({n for names in failing for n in names})
            died = sorted({last_words(r) for r in doc.get("cells", []) if r.get("server_died")})
            found.append(
                {"session": doc.get("session"), "controls": names, "cells": len(failing)}
                | ({"died": died} if died else {})
            )
    return found


def last_words(record: dict[str, Any]) -> str:
    """How a cell's server died: its exit status and the last line of its stderr."""
    died = record.get("server_died") or {}
    lines = [ln.strip() for ln in str(died.get("stderr", "")).splitlines() if ln.strip()]
    return f"exit status {died.get('status')}: {lines[-1] if lines else 'nothing on stderr'}"


def disagreements(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each client's observation of a cell that is not the model's (records.agrees), with
    the session and the cell's label; a cell whose controls failed observed nothing."""
    found = []
    for doc in docs:
        for record in doc.get("cells", []):
            if failed_controls(record):
                continue
            for seen in record.get("observed", []):
                if not agrees(seen, record["expected"]):
                    found.append(
                        {
                            "session": doc.get("session"),
                            "cell": Cell(**record["cell"]).label(),
                            "client": seen.get("client"),
                            "observed": {k: seen.get(k) for k in record["expected"] if k in seen},
                            "expected": record["expected"],
                        }
                    )
    return found


def session_docs(where: Path) -> list[dict[str, Any]]:
    """The SessionResults documents the user-stack command left in ``where``."""
    docs = []
    for path in sorted(where.glob("stack-*.json")):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue  # a run cut short: its arm counts as not run
        doc[FAILED_TESTS] = failed_tests(path.with_suffix(".junit.xml"))
        docs.append(doc)
    return docs


def failed_tests(junit: Path) -> int | None:
    """The failures and errors pytest's JUnit report counts, None without a readable one."""
    try:
        suites = ElementTree.parse(junit).getroot().iter("testsuite")
        return sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    except (OSError, ElementTree.ParseError, ValueError):
        return None


def excused(docs: Sequence[dict[str, Any]], unserved: Sequence[dict[str, Any]]) -> set[str]:
    """The sessions whose every failed test is a cell that failed its controls (counted by
    not_served): what the stack cannot serve, recorded there, not a failed run.  Without
    pytest's count, only a session all of whose cells failed them."""
    found = set()
    for u in unserved:
        doc = next(d for d in docs if d.get("session") == u["session"])
        failed = doc.get(FAILED_TESTS)
        if u["cells"] == (len(doc.get("cells", [])) if failed is None else failed):
            found.add(u["session"])
    return found


def run_stack(stack: PlanStack, root: Path, work: Path) -> dict[str, Any]:
    """One stack through `python -m tests.harness.userstack` (its own process: a crash
    loses no other stack); its outcome, written to <root>/<id>/outcome.json."""
    where = root / stack.id
    shutil.rmtree(where, ignore_errors=True)  # never read a previous run's
    where.mkdir(parents=True)
    outcome: dict[str, Any] = {"id": stack.id, "pins": stack.pins, "python": stack.python}
    started = time.monotonic()
    command = [sys.executable, "-m", "tests.harness.userstack", *stack.args()]
    command += ["--results", str(where), "--work", str(work), "--jobs", "1"]
    try:
        proc = subprocess.run(
            command,
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=STACK_TIMEOUT,
            check=False,
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        parts = [p for p in (exc.stdout, exc.stderr) if p]
        output = "".join(p.decode(errors="replace") if isinstance(p, bytes) else p for p in parts)
        code = None
    (where / "userstack.log").write_text(" ".join(command) + "\n" + output)
    docs = session_docs(where)
    errors = [ln[len("error: ") :] for ln in output.splitlines() if ln.startswith("error: ")]
    if code == 2 and errors:  # a StackError: the stack cannot be built (userstack._errors)
        outcome.update(status=CANNOT_BUILD, reason=errors[-1], cells=0, disagreements=[])
    elif not docs:
        tail = [ln for ln in output.splitlines() if ln.strip()][-1:] or ["no output"]
        said = "timed out" if code is None else f"exit {code}"
        outcome.update(status=CRASHED, reason=f"{said}: {tail[0][:300]}", cells=0)
        outcome["disagreements"] = []
    else:
        unserved = not_served(docs)
        cannot_serve = excused(docs, unserved)
        failed = [
            d.get("session")
            for d in docs
            if d.get("status") != "passed" and d.get("session") not in cannot_serve
        ]
        outcome.update(
            status=RAN,
            reason=None,
            cells=sum(len(d.get("cells", [])) for d in docs),
            disagreements=disagreements(docs),
            failed_sessions=failed,
            not_served=unserved,
            # the layers (and the agent) the user-stack command found it cannot run here
            cannot_run=[ln.strip() for ln in output.splitlines() if CANNOT_RUN in ln],
        )
    outcome["seconds"] = round(time.monotonic() - started, 1)
    write_outcome(where, outcome)
    return outcome


def write_outcome(where: Path, outcome: dict[str, Any]) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / OUTCOME).write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")


def summary_line(outcome: dict[str, Any]) -> str:
    head = f"{outcome['id']} (Python {outcome['python']}): {outcome['status']}"
    if outcome["status"] != RAN:
        return f"{head}: {outcome['reason']}"
    said = f"{head}, {outcome['cells']} cells in {outcome['seconds']} s"
    for d in outcome["disagreements"]:
        where = f"{outcome['id']} {d['session']}: {d['cell']} ({d['client']})"
        said += f"\n  disagrees with the model: {where}"
    for line in outcome.get("cannot_run", []):
        said += f"\n  {outcome['id']}: {line}"
    for u in outcome.get("not_served", []):
        said += (
            f"\n  cannot serve: {outcome['id']} {u['session']}: {u['cells']} cells failed "
            f"their controls {', '.join(u['controls'])} (not what the cell claims: no observation)"
        )
        for words in u.get("died", []):
            said += f"\n    the server died: {words}"
    for session in outcome.get("failed_sessions", []):
        said += f"\n  pytest failed: {outcome['id']} {session} (see its *.pytest.log)"
    return said


def run(
    stacks: Sequence[PlanStack], root: Path = ATLAS_RESULTS, work: Path = CACHE / "stacks"
) -> int:
    """The stacks, STACKS_AT_ONCE at a time, each outcome printed as it ends; 1 if a cell
    disagrees with the model or a session's pytest failed, else 0."""
    started = time.monotonic()

    def one(stack: PlanStack) -> dict[str, Any]:
        print(f"{stack.id}: {' '.join(stack.args())}", flush=True)
        try:
            outcome = run_stack(stack, root, work)
        except Exception as exc:  # noqa: BLE001  the harness's own fault: the others run on
            outcome = {"id": stack.id, "pins": stack.pins, "python": stack.python}
            outcome.update(status=CRASHED, reason=repr(exc)[:500], cells=0, disagreements=[])
            write_outcome(root / stack.id, outcome)
        print(summary_line(outcome), flush=True)
        return outcome

    with ThreadPoolExecutor(STACKS_AT_ONCE) as pool:
        outcomes = list(pool.map(one, stacks))
    bad = failed(outcomes)
    print(
        f"{len(outcomes)} stacks in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{o['id']} {o['status']}" for o in outcomes)
        + f"; outcomes in {root}/<id>/{OUTCOME}"
    )
    if bad:
        print("the model disagrees with a run: " + ", ".join(bad), file=sys.stderr)
    return 1 if bad else 0


def failed(outcomes: Sequence[dict[str, Any]]) -> list[str]:
    """The stacks a cell of which disagrees with the model, or whose pytest failed: a stack
    that cannot be built is a result, not a failure."""
    return [o["id"] for o in outcomes if o["disagreements"] or o.get("failed_sessions")]
