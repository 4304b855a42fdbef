"""The page's "Will my versions work?" section: report/atlas.json beside the plan's picks.

A reader picks a version per axis (the plan's picks); the page shows, per layer, the
model's prediction for that combination and the runs that back it.  The predictions are
computed here, at report time, with the model itself (tests/harness/model.py), for every
combination of the picks the model reads, and embedded as rendered grids: page.js only
looks a grid up by the picked versions, it holds no copy of the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from itertools import product
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..cells import (
    AGENT_LAYER,
    BOOLS,
    DEFAULT_HANDLER,
    LAYER_BY_DISTRIBUTION,
    NO_LAYER,
    Cell,
    build_version,
)
from ..inputs import Data
from ..model import Prediction, StackFacts, predict
from ..paths import DATA
from ..userstack._predict import COLUMNS, LAYER_COLUMNS, has_patches
from .layout import FINISHED_GLYPH, MARKS

PLAN = DATA / "atlas" / "plan.json"  # tests/harness/atlas/_plan.py writes it
ATLAS = "atlas.json"  # in the report's directory: `nox -s atlas -- --build` writes it
BUILD = ("nox -s atlas -- --sample 8", "nox -s atlas -- --build")  # what makes one
# The axes whose picks the model reads (StackFacts.from_versions): the handler, the
# agent, and the two packages of the sentry-hold rule.  Every other axis (Python, a
# layer's own release) leaves the prediction alone: the model assumes a layer behaves
# at every release as the layer sessions observed it, which the coverage line says.
MODEL_READS = ("handler", "newrelic", "gevent", "flask")


def read_atlas(report_dir: Path, problems: list[str]) -> Data | None:
    """report/atlas.json, or None when there is none; a file that is not an atlas is a
    problem.  The one place the page reads atlas.json (its schema: `_table.py`)."""
    path = report_dir / ATLAS
    if not path.is_file():
        return None
    try:
        atlas = json.loads(path.read_text())
        if not isinstance(atlas, dict) or not isinstance(atlas.get("entries"), list):
            raise ValueError("no list of entries")
    except ValueError as exc:
        problems.append(f"{path}: not an atlas ({exc}): rerun `nox -s atlas -- --build`")
        return None
    return atlas


def axis_package(name: str, axis: Data) -> str:
    return str(axis.get("package") or name)


@cache  # parsed once per pick, not once per combination
def handler_pin(value: str) -> tuple[str, str]:
    """("gevent-websocket", "0.10.1") of a handler pick "gevent-websocket==0.10.1"."""
    req = Requirement(value)
    return req.name, next(iter(req.specifier)).version


def stack_picks(plan: Data, stack: Data) -> dict[str, str | None]:
    """The stack's value on each axis of the plan (None: it leaves that axis out)."""
    pins = {canonicalize_name(k): v for k, v in stack["pins"].items()}
    out: dict[str, str | None] = {}
    for name, axis in plan["axes"].items():
        if name == "python":
            out[name] = stack.get("python")
        elif name == "handler":
            served = [v["version"] for v in axis["values"]]
            out[name] = next(
                (
                    v
                    for v in served
                    if pins.get(canonicalize_name(handler_pin(v)[0])) == handler_pin(v)[1]
                ),
                None,
            )
        else:
            out[name] = pins.get(canonicalize_name(axis_package(name, axis)))
    return out


def model_versions(plan: Data, picks: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """({package: version} the model reads, the handler's name) of one combination."""
    handler, release = handler_pin(picks["handler"])
    versions = {handler: release}
    for name, value in picks.items():
        axis = plan["axes"][name]
        if name == "handler":
            continue
        versions[axis_package(name, axis)] = value
        paired = next((v.get("with") for v in axis["values"] if v["version"] == value), None)
        if axis.get("with") and paired:
            versions[axis["with"]] = paired
    return versions, canonicalize_name(handler)


@cache
def build_facts(versions: tuple[tuple[str, str], ...], handler: str, fixed: bool) -> StackFacts:
    """The model's facts of one build of a combination ({package: version} as items)."""
    found = dict(versions)
    if handler == DEFAULT_HANDLER:
        found[DEFAULT_HANDLER] = build_version(found[DEFAULT_HANDLER], fixed)
    return StackFacts.from_versions(found, handler)


@cache  # one look at patches/ per release
def builds(handler: str, release: str) -> tuple[tuple[bool, str], ...]:
    """(fixed, label): gevent-websocket's vanilla and patched builds, another handler's one."""
    if handler != DEFAULT_HANDLER:
        return ((False, handler),)
    return tuple((f, "patched" if f else "vanilla") for f in BOOLS if not f or has_patches(release))


OPEN = next(m[2] for m in MARKS if m[0] == "open")  # the page's mark of a never-closed iterable


def mark(p: Prediction, layer: str) -> str:
    """One cell as the page shows it: the verdict, and the layer's end (F . _ -)."""
    if layer == NO_LAYER:
        return p.verdict + ("" if p.iterable_closed else OPEN)
    return f"{p.verdict} {FINISHED_GLYPH.get(p.layer_finished, '?')}"


BuildFacts = tuple[tuple[bool, str, StackFacts], ...]  # (fixed, label, facts) per build


def combination_facts(plan: Data, picks: Mapping[str, str]) -> tuple[str, BuildFacts]:
    """(handler, the model's facts of each build) of one combination of picks."""
    versions, handler = model_versions(plan, picks)
    return handler, tuple(
        (fixed, label, build_facts(tuple(sorted(versions.items())), handler, fixed))
        for fixed, label in builds(handler, versions[handler])
    )


def prediction_block(plan: Data, picks: Mapping[str, str], layer: str) -> Data:
    """The model's grid of one layer for one combination: rows, marks, causes, summary."""
    return _block(layer, *combination_facts(plan, picks))


@cache
def _block(layer: str, handler: str, facts: BuildFacts) -> Data:
    """A grid from the model's facts of each build: combinations alike in them share it."""
    rows: list[Data] = []
    causes: list[str] = []
    # a layer's cells: agent off, rum off (tests/matrix/test_layers.py)
    columns = COLUMNS if layer == NO_LAYER else [(False, h, s) for h, s in LAYER_COLUMNS]
    for fixed, label, build in facts:
        for agent in (True, False) if layer == NO_LAYER else (False,):
            cells = []
            for rum, hg, streaming in columns:
                cell = Cell("atlas", agent, fixed, rum, hg, streaming, handler=handler, layer=layer)
                p = predict(cell, build)
                cells.append({"verdict": p.verdict, "mark": mark(p, layer)})
                for text in (p.layer_cause, p.tcp_cause):
                    if text and text not in causes:
                        causes.append(text)
            head = f"agent {'on' if agent else 'off'} · {label}" if layer == NO_LAYER else label
            rows.append({"label": head, "cells": cells})
    marks = [c["verdict"] for r in rows for c in r["cells"]]
    return {
        "rows": rows,
        "causes": causes,
        "summary": f"{marks.count('+')}/{len(marks)} cells pass",
    }


def layer_axes(plan: Data) -> dict[str, str]:
    """{layer: its axis}: the agent's axis for the no-layer grid, each layer's distribution."""
    found = {}
    for name, axis in plan["axes"].items():
        package = canonicalize_name(axis_package(name, axis))
        if package == AGENT_LAYER:
            found[NO_LAYER] = name
        elif package in LAYER_BY_DISTRIBUTION:
            found[LAYER_BY_DISTRIBUTION[package]] = name
    return found


def key_of(axes: Sequence[str], picks: Mapping[str, str]) -> str:
    """The lookup key page.js builds from the picks the same way."""
    return "|".join(f"{a}={picks[a]}" for a in axes)


def fold(axes: list[str], table: dict[tuple[str, ...], str]) -> tuple[list[str], dict[str, str]]:
    """Drop each axis the prediction does not vary with: {key: block id} stays small."""
    kept = list(axes)
    for axis in list(axes):
        i = kept.index(axis)
        folded: dict[tuple[str, ...], str] = {}
        if all(folded.setdefault(k[:i] + k[i + 1 :], v) == v for k, v in table.items()):
            kept.pop(i)
            table = folded
    return kept, {key_of(kept, dict(zip(kept, k, strict=True))): b for k, b in table.items()}


def layer_predictions(plan: Data, layers: Sequence[str], axes: list[str]) -> dict[str, Data]:
    """{layer: every combination's grid, each distinct grid once, and the lookup}."""
    values = [[v["version"] for v in plan["axes"][a]["values"]] for a in axes]
    blocks: dict[str, dict[str, Data]] = {layer: {} for layer in layers}
    tables: dict[str, dict[tuple[str, ...], str]] = {layer: {} for layer in layers}
    drawn: dict[int, str] = {}  # each grid _block made (it keeps them) -> its block id
    for combo in product(*values):
        handler, facts = combination_facts(plan, dict(zip(axes, combo, strict=True)))
        for layer in layers:
            block = _block(layer, handler, facts)
            if id(block) not in drawn:
                sig = json.dumps(block, sort_keys=True)  # alike facts can draw alike grids
                if sig not in blocks[layer]:
                    blocks[layer][sig] = {**block, "id": f"pred-{layer}-{len(blocks[layer])}"}
                drawn[id(block)] = blocks[layer][sig]["id"]
            tables[layer][combo] = drawn[id(block)]
    out = {}
    for layer in layers:
        key_axes, keys = fold(axes, tables[layer])
        out[layer] = {"key_axes": key_axes, "keys": keys, "blocks": list(blocks[layer].values())}
    return out


def evidence(results_dir: Path, report_dir: Path, stack: str) -> list[Data]:
    """The files of a run (results/atlas/<id>/), each linked from the page's directory."""
    where = results_dir / "atlas" / stack
    files = sorted(p for p in where.rglob("*") if p.is_file()) if where.is_dir() else []
    return [
        {"name": str(p.relative_to(where)), "href": os.path.relpath(p, report_dir)} for p in files
    ]


def stacks_shown(plan: Data, atlas: Data, results_dir: Path, report_dir: Path) -> list[Data]:
    failed = {f["id"]: f.get("reason", "") for f in atlas.get("stacks_failed_to_build") or []}
    named = {
        run
        for e in atlas["entries"]
        for kind in ("pass", "fail")
        for r in e.get(kind) or []
        for run in r.get("runs") or []
    }
    out = []
    for stack in plan["stacks"]:
        files = evidence(results_dir, report_dir, stack["id"])
        status = (
            "failed to build"
            if stack["id"] in failed
            else "run"
            if files or stack["id"] in named
            else "not run"
        )
        out.append(
            {
                "id": stack["id"],
                "picks": stack_picks(plan, stack),
                "status": status,
                "reason": failed.get(stack["id"], ""),
                "files": files,
                "href": files[0]["href"] if files else None,
            }
        )
    return out


def entry_rows(atlas: Data, links: Mapping[str, str | None]) -> list[Data]:
    """atlas.json's entries, each run id beside its evidence link (None: no files here)."""

    def runs(ranges: Iterable[Data]) -> list[Data]:
        return [
            {**r, "runs": [{"id": i, "href": links.get(i)} for i in r.get("runs") or []]}
            for r in ranges
        ]

    return [
        {
            **e,
            "pass": runs(e.get("pass") or []),
            "fail": runs(e.get("fail") or []),
            "never_run": e.get("never_run") or [],
        }
        for e in atlas["entries"]
    ]


def plan_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def section(
    results_dir: str | Path,
    report_dir: str | Path,
    problems: list[str],
    plan_path: Path = PLAN,
) -> Data:
    """The section's data: {"atlas": None, "build": ...} until there is an atlas."""
    report, results = Path(report_dir), Path(results_dir)
    atlas = read_atlas(report, problems)
    if atlas is None:
        return {"atlas": None, "build": list(BUILD)}
    if not plan_path.is_file():
        problems.append(f"{report / ATLAS} exists but {plan_path} does not: no picks to show")
        return {"atlas": None, "build": list(BUILD)}
    plan = json.loads(plan_path.read_text())
    axes = list(plan["axes"])
    default = {a: plan["axes"][a]["values"][-1]["version"] for a in axes}
    reads = [a for a in MODEL_READS if a in plan["axes"]]
    layers = []
    predicted = layer_predictions(plan, list(layer_axes(plan)), reads)
    for layer, axis in layer_axes(plan).items():
        found = predicted[layer]
        layers.append(
            {
                "layer": layer,
                "axis": axis,
                # the axes a run must share with the picks to observe this layer's cells
                "axes": [a for a in axes if a == axis or a not in layer_axes(plan).values()],
                **found,
                "default": found["keys"][key_of(found["key_axes"], default)],
            }
        )
    # the plan's stacks that ran or failed to build (a plan holds thousands not run yet)
    stacks = [s for s in stacks_shown(plan, atlas, results, report) if s["status"] != "not run"]
    return {
        "atlas": atlas,
        "plan_matches": atlas.get("plan") == plan_sha(plan_path),
        "plan_path": str(plan_path),
        "axes": [
            {"name": a, "values": plan["axes"][a]["values"], "default": default[a]} for a in axes
        ],
        "layers": layers,
        "stacks": stacks,
        "plan_stacks": len(plan["stacks"]),
        "entries": entry_rows(atlas, {s["id"]: s["href"] for s in stacks}),
        # what page.js reads: the lookup tables and the runs, never the model
        "script": {
            "layers": [
                {k: lay[k] for k in ("layer", "axes", "key_axes", "keys")} for lay in layers
            ],
            "stacks": [
                {k: s[k] for k in ("id", "picks", "href")} for s in stacks if s["status"] == "run"
            ],
            "not_installable": plan.get("not_installable") or [],
        },
    }
