"""report/atlas.json from results/atlas/**: for each layer x handler build x axis package,
the picked releases that work and those that do not (with the model's cause and the runs
that showed it), and those no run had; a markdown table of it for the job summary.

The page predicts any picked combination itself, with the model at report time
(tests/harness/render/versions.py): atlas.json holds what the runs observed."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from ..cells import AGENT_LAYER, LAYER_BY_DISTRIBUTION, Cell
from ..model import Prediction
from ..paths import REPORT
from ..records import CellRecord, Outcome, from_dict, unfinished
from ..userstack._predict import predict_cell
from ..userstack._request import GWS
from ..userstack._upgrade import Change, cause_of, proof_of
from ._axes import HANDLER, PYTHON
from ._plan import PLAN, Plan, PlanStack, load_plan
from ._runs import ATLAS_RESULTS, OUTCOME, RAN, failed_controls, last_words, session_docs

ATLAS_JSON = REPORT / "atlas.json"
FIXED = "+fixed"  # the patched build of gevent-websocket, as a handler of its own
# The releases StackFacts.from_versions reads: the model's rule axes.
RULE_AXES = (GWS, "newrelic", "gevent", "Werkzeug")
# A layer's own distribution appears only in that layer's entries.
LAYER_OF = {**LAYER_BY_DISTRIBUTION, **({"newrelic": AGENT_LAYER} if AGENT_LAYER else {})}
CANNOT_SERVE = "the stack cannot serve the cell (its positive controls failed)"
NOT_PREDICTED = "not predicted by the model: a disagreement (the run's outcome.json names the cell)"
Json = dict[str, Any]


def layer_of(doc: Json) -> str:
    """The layer a session's cells are about: its own, the agent, or "none"."""
    return str(doc.get("layer") or (AGENT_LAYER if doc.get("agent") else "none"))


def handler_of(outcome: Json, doc: Json) -> str:
    """The handler a session served (its build: gevent-websocket patched or not)."""
    handler = PlanStack(outcome["id"], outcome["python"], outcome["pins"], 0).handler()
    return handler + (FIXED if handler == GWS and doc.get("fixed") else "")


# What a user of the stack sees fail in a cell (every client counted): the exchange, the
# layer's end of request work, the server's close of TCP.  (An iterable never closed
# shows as a layer that never finishes.)
FAILS: dict[str, Callable[[Any], bool]] = {
    "verdict": lambda v: v != "+",
    "layer_finished": unfinished,
    "server_closed_tcp": lambda v: v is False,
}


def failing(outcome: Outcome | Prediction) -> list[str]:
    """The columns of FAILS that fail in an observed or predicted outcome."""
    return [c for c, bad in FAILS.items() if bad(getattr(outcome, c))]


def model_inputs(versions: Mapping[str, Any]) -> dict[str, str]:
    """The model's inputs from the versions a server reported (its build label dropped)."""
    out = {k: str(versions[k]) for k in RULE_AXES if versions.get(k)}
    out[GWS] = Version(out.get(GWS, "0")).base_version
    out.setdefault("newrelic", "0")
    return out


def cell_cause(record: CellRecord, column: str) -> str:
    """The model's sentence for a column that fails in a cell (_upgrade's words), or
    NOT_PREDICTED where the model expected it to work (not where it predicts nothing)."""
    versions = model_inputs(record.versions)
    expected = predict_cell(record.cell, versions)
    # a TCP close the model leaves open (a handler's race) is its sentence, not a surprise
    races = column == "server_closed_tcp" and expected.server_closed_tcp is None
    if column not in failing(expected) and not races:
        return NOT_PREDICTED
    change = Change(record.cell, column, None, None)
    return cause_of(change, versions, versions) or NOT_PREDICTED


@dataclass(frozen=True)
class Failure:
    """A column of a cell that failed in a run, the model's inputs there, and its cause."""

    cell: Cell
    column: str
    versions: dict[str, str]
    cause: str


Seen = dict[tuple[str, str], dict[str, list[Failure]]]  # (layer, handler) -> id -> failures


def observations(root: Path) -> tuple[list[Json], Seen]:
    """(each stack's outcome, {(layer, handler): {stack id: what failed, [] if everything
    worked}})."""
    outcomes: list[Json] = []
    seen: Seen = {}
    for path in sorted(root.glob(f"*/{OUTCOME}")):
        outcome = json.loads(path.read_text())
        outcomes.append(outcome)
        if outcome.get("status") != RAN:
            continue
        for doc in session_docs(path.parent):
            key = (layer_of(doc), handler_of(outcome, doc))
            found = seen.setdefault(key, {}).setdefault(outcome["id"], [])
            for data in doc.get("cells", []):
                record = from_dict(CellRecord, data)
                versions = model_inputs(record.versions)
                if controls := failed_controls(data):  # no observation: what it cannot serve
                    text = f"{CANNOT_SERVE}: {', '.join(controls)}"
                    if record.server_died:  # the cause, when the server died mid-cell
                        text += f" (the server died: {last_words(data)})"
                    found.append(Failure(record.cell, "controls", versions, text))
                    continue
                for column in failing(record.outcome()):
                    text = cell_cause(record, column)
                    found.append(Failure(record.cell, column, versions, text))
    return outcomes, seen


def axis_packages(plan: Plan) -> dict[str, list[str]]:
    """{package: its picked releases in order}: each axis's package, the release it is
    paired with ("with"), each handler's ("gevent-websocket==0.10.1"), and python."""
    out: dict[str, list[str]] = {}
    for name, axis in plan.axes.items():
        if name == PYTHON:
            out[PYTHON] = [p.version for p in axis.values]
        elif name == HANDLER:
            for p in axis.values:
                package, release = p.version.split("==", 1)
                out.setdefault(package, []).append(release)
        elif axis.package:
            out[axis.package] = [p.version for p in axis.values]
            if axis.paired:
                paired = {p.paired.version for p in axis.values if p.paired}
                out[axis.paired] = sorted(paired, key=Version)
    return out


def version_in(outcome: Json, package: str) -> str | None:
    if package == "python":
        return str(outcome["python"])
    pins = {canonicalize_name(n): v for n, v in outcome["pins"].items()}
    return pins.get(canonicalize_name(package))


def ranges(
    picks: Sequence[str], by_pick: Mapping[str, tuple[str, str, list[str]]]
) -> tuple[list[Json], list[Json], list[str]]:
    """(pass ranges, fail ranges, never-run picks): consecutive observed picks alike
    (status and cause) merge; a pick no run had breaks nothing, and is listed."""
    passed: list[Json] = []
    failed: list[Json] = []
    never = [p for p in picks if p not in by_pick]
    last: tuple[str, str] | None = None
    for pick in (p for p in picks if p in by_pick):
        status, text, runs = by_pick[pick]
        into = passed if status == "pass" else failed
        if last == (status, text):
            into[-1]["to"] = pick
            into[-1]["runs"] = sorted(set(into[-1]["runs"]) | set(runs))
        else:
            into.append({"from": pick, "to": pick, "runs": sorted(runs)})
            if status == "fail":
                into[-1]["cause"] = text
        last = (status, text)
    return passed, failed, never


def proven_by(
    package: str, failed: Json, passed: Sequence[Json], why: Iterable[Failure]
) -> str | None:
    """``history(<rule>)`` that proved the model's flip of a failure when ``package`` alone
    moves to the pass pick beside the fail range (_upgrade.proof_of), else None."""
    lo, hi = Version(failed["from"]), Version(failed["to"])
    below = [r["to"] for r in passed if Version(r["to"]) < lo]
    above = [r["from"] for r in passed if Version(r["from"]) > hi]
    beside = ([max(below, key=Version)] if below else []) + (
        [min(above, key=Version)] if above else []
    )
    for f in why:
        if f.column == "controls":  # no observation, so no rule of the model's at stake
            continue
        for pick in beside if package in f.versions else []:
            said = proof_of(
                Change(f.cell, f.column, None, None), f.versions, {**f.versions, package: pick}
            )
            if m := re.search(r"history\(([^)]+)\)", said):
                return f"history({m[1]})"
    return None


def entries(plan: Plan, outcomes: Sequence[Json], seen: Seen) -> list[Json]:
    by_id = {o["id"]: o for o in outcomes}
    out = []
    for (layer, handler), runs in sorted(seen.items()):
        for package, picks in axis_packages(plan).items():
            owner = LAYER_OF.get(canonicalize_name(package))
            if owner is not None and owner != layer:
                continue
            by_pick: dict[str, tuple[str, str, list[str]]] = {}
            for pick in picks:
                having = [i for i in runs if version_in(by_id[i], package) == pick]
                if not having:
                    continue
                bad = [i for i in having if runs[i]]
                text = "; ".join(dict.fromkeys(f.cause for i in bad for f in runs[i]))
                by_pick[pick] = ("fail", text, bad) if bad else ("pass", "", having)
            if not by_pick:
                continue
            passed, failed, never = ranges(picks, by_pick)
            for f in failed:
                why = [x for i in f["runs"] for x in runs[i]]
                f["proven_by"] = proven_by(package, f, passed, why)
            out.append(
                {
                    "layer": layer,
                    "handler": handler,
                    "package": package,
                    "pass": passed,
                    "fail": failed,
                    "never_run": never,
                }
            )
    return out


# -- the document and its table ------------------------------------------------------


def build(source: Path = PLAN, root: Path = ATLAS_RESULTS, out: Path = ATLAS_JSON) -> Json:
    """report/atlas.json from the results in ``root`` of the plan read from ``source``."""
    plan = load_plan(source)
    outcomes, seen = observations(root)
    doc = {
        "plan": hashlib.sha256(source.read_bytes()).hexdigest(),
        "stacks_run": sum(o.get("status") == RAN for o in outcomes),
        "stacks_failed_to_build": [
            {"id": o["id"], "reason": o.get("reason")} for o in outcomes if o.get("status") != RAN
        ],
        "entries": entries(plan, outcomes, seen),
        "cannot_run": [
            {"id": o["id"], "line": line} for o in outcomes for line in o.get("cannot_run", [])
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def markdown(doc: Json) -> str:
    """The entries as one markdown table, the causes as numbered notes below it."""
    notes: dict[str, int] = {}

    def span(r: Json) -> str:
        text = r["from"] if r["from"] == r["to"] else f"{r['from']} – {r['to']}"
        cited = ""
        if "cause" in r:
            cited = f" [{notes.setdefault(r['cause'], len(notes) + 1)}]"
            cited += f" {r['proven_by']}" if r.get("proven_by") else ""
        return f"{text} ({', '.join(r['runs'])}){cited}"

    lines = [
        f"Atlas: {doc['stacks_run']} stacks run, {len(doc['stacks_failed_to_build'])} not built",
        "",
        "| layer | handler | package | works | fails | never run |",
        "|---|---|---|---|---|---|",
    ]
    for e in doc["entries"]:
        cells = [
            e["layer"],
            e["handler"],
            e["package"],
            "<br>".join(span(r) for r in e["pass"]) or "–",
            "<br>".join(span(r) for r in e["fail"]) or "–",
            ", ".join(e["never_run"]) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"{n}. {text}" for text, n in notes.items())]
    lines += [f"- not built: {f['id']}: {f['reason']}" for f in doc["stacks_failed_to_build"]]
    lines += [f"- {c['id']}: {c['line']}" for c in doc.get("cannot_run", [])]
    return "\n".join(lines) + "\n"
