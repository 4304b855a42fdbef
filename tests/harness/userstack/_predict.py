"""The model's grid for a stack, from its pins alone (``--predict``), with the causes; and
the observed grid printed beside it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..builds import PATCHES
from ..cells import ARMS, BOOLS, Cell, build_version, layer_sessions_ran
from ..model import AGENT_SKIPS_WEBSOCKETS, Prediction, StackFacts, predict
from ..render.layout import FINISHED_GLYPH
from ._request import GWS, LAST_GWS, Request

Arm = tuple[bool, bool]  # (agent, fixed): a row of the grid
Column = tuple[bool, bool, bool]  # (rum, hello_goodbyer, streaming)
Grid = dict[Arm, dict[Column, Prediction]]
Observed = dict[Arm, dict[Column, tuple[str, bool]]]  # (verdict, iterable closed)

COLUMNS = [(r, h, s) for r in BOOLS for h in BOOLS for s in BOOLS]


def model_versions(request: Request) -> tuple[dict[str, str], list[str]]:
    """{gevent-websocket, newrelic} for the model, and what had to be assumed."""
    assumed = []
    gws = request.exact(GWS)
    if gws is None:
        gws = LAST_GWS
        assumed.append(f"{GWS} is not pinned exactly: assumed {LAST_GWS}, its last release")
    nr = request.exact("newrelic")
    if nr is None:
        nr = str(AGENT_SKIPS_WEBSOCKETS)
        assumed.append(
            f"newrelic is not pinned exactly: assumed a release >= {nr} (since "
            "2016), whose RUM leaves websockets alone; an older one makes the "
            "agent-on rum-on cells of the vanilla arm fail"
        )
    # read only by the layers' rules
    rules = {"gevent": request.exact("gevent"), "Werkzeug": request.exact("werkzeug")}
    return {GWS: gws, "newrelic": nr, **{n: v for n, v in rules.items() if v}}, assumed


def stack_facts(versions: Mapping[str, str], fixed: bool) -> StackFacts:
    """The model's facts of one build of a stack with these versions."""
    return StackFacts.from_versions({**versions, GWS: build_version(versions[GWS], fixed)})


def predict_cell(cell: Cell, versions: Mapping[str, str]) -> Prediction:
    """The model's prediction for one cell of a stack with these versions."""
    return predict(cell, stack_facts(versions, cell.fixed))


def prediction_grid(name: str, versions: dict[str, str]) -> Grid:
    """{(agent, fixed): {(rum, hg, streaming): Prediction}} for the given versions."""
    return {
        (agent, fixed): {
            col: predict_cell(Cell(name, agent, fixed, *col), versions) for col in COLUMNS
        }
        for agent, fixed in ARMS
    }


def cause(versions: dict[str, str], fixed: bool, prediction: Prediction, streaming: bool) -> str:
    """Why the model predicts what it does for one cell, in a sentence (one per kind)."""
    if not (prediction.lazy_layers or streaming):
        return ""
    gws = build_version(versions[GWS], fixed)
    lazy = (
        "its lazy layers (the streaming response's iterator, the HelloGoodbyer "
        "generator, the agent's RUM middleware below newrelic "
        f"{AGENT_SKIPS_WEBSOCKETS})"
    )
    if prediction.verdict == "-":
        return (
            f"gevent-websocket {gws} does not iterate the application's result (before "
            f"0.10 it calls the application and drops what it returns), so {lazy} never run"
        )
    return f"gevent-websocket {gws} iterates the application's result, so {lazy} run"


def print_grid(
    title: str,
    rows: Grid,
    versions: dict[str, str],
    out: TextIO | None = None,
    observed: Observed | None = None,
) -> None:
    """The grid as the report draws it: rows agent x fixed, columns rum x hg x streaming.

    ``observed``: {(agent, fixed): {col: (verdict, closed)}}; a cell whose verdict is not
    the model's is marked ``!``, one whose iterable was never closed ``o``.
    """
    out = out or sys.stdout
    head = ("rum", "hello_goodbyer", "streaming")
    print(title, file=out)
    for i, label in enumerate(head):
        print(
            f"{label:>24}  " + " ".join(f"{'on' if c[i] else 'off':<5}" for c in COLUMNS), file=out
        )
    causes: dict[str, str] = {}
    for arm in (a for a in ARMS if a in rows):
        agent, fixed = arm
        cells = []
        for col in COLUMNS:
            p = rows[arm][col]
            text = cause(versions, fixed, p, col[2])
            letter = ""
            if text:
                letter = causes.setdefault(text, "ABCDEFGHIJKLMNOP"[len(causes)])
            if observed is None:
                mark = p.verdict + ("" if p.iterable_closed else "o") + letter
            else:
                seen = observed.get(arm, {}).get(col)
                if seen is None:
                    mark = "?"
                else:
                    verdict, closed = seen
                    mark = (
                        verdict
                        + ("!" if verdict != p.verdict else "")
                        + ("" if closed else "o")
                        + letter
                    )
            cells.append(f"{mark:<5}")
        label = f"agent {'on' if agent else 'off'} · {'patched' if fixed else 'vanilla'}"
        print(f"{label:>24}  " + " ".join(cells), file=out)
    for text, letter in causes.items():
        print(f"  {letter}: {text}", file=out)
    print(
        "  o: the server never called close() on the application's iterable (PEP 3333)"
        + ("; !: observed verdict differs from the model's" if observed is not None else ""),
        file=out,
    )


LayerArm = tuple[str, bool]  # (layer, fixed): a layer's run on one build
LayerColumn = tuple[bool, bool]  # (hello_goodbyer, streaming)
LayerGrid = dict[bool, dict[LayerColumn, Prediction]]  # fixed -> column -> the model's
# fixed -> column -> (verdict, layer_finished, server_closed_tcp), all clients agreeing
LayerObserved = dict[bool, dict[LayerColumn, tuple[Any, Any, Any]]]
LAYER_COLUMNS = [(h, s) for h in BOOLS for s in BOOLS]


def layer_grid(
    name: str, layer: str, versions: Mapping[str, str], builds: Sequence[bool]
) -> LayerGrid:
    """The model's prediction for a layer's cells (tests/matrix/test_layers.py) per build."""
    return {
        fixed: {
            col: predict_cell(Cell(name, False, fixed, False, *col, layer=layer), versions)
            for col in LAYER_COLUMNS
        }
        for fixed in builds
    }


def _layer_mark(verdict: Any, finished: Any, tcp: Any) -> str:
    """``+ F closed``: the verdict, whether the layer finished (F, . never, _ not started,
    - nothing to finish), whether the server closed TCP (closed, held; ? not predicted)."""
    done = FINISHED_GLYPH.get(finished, str(finished))
    held = {True: "closed", False: "held", None: "?"}.get(tcp, str(tcp))
    return f"{verdict} {done} {held}"


def print_layer_grid(
    title: str, rows: LayerGrid, out: TextIO | None = None, observed: LayerObserved | None = None
) -> None:
    """A layer's grid: rows vanilla / patched, columns hello_goodbyer x streaming; each cell
    its verdict, layer_finished and server_closed_tcp; ``observed`` beside the model's, a
    difference marked ``!``; the model's causes below."""
    out = out or sys.stdout
    print(title, file=out)
    for i, label in enumerate(("hello_goodbyer", "streaming")):
        print(
            f"{label:>24}  " + " ".join(f"{'on' if c[i] else 'off':<14}" for c in LAYER_COLUMNS),
            file=out,
        )
    causes: dict[str, str] = {}
    for fixed, cells in rows.items():
        marks = []
        for col in LAYER_COLUMNS:
            p = cells[col]
            want = (p.verdict, p.layer_finished, p.server_closed_tcp)
            letters = "".join(
                causes.setdefault(text, "ABCDEFGHIJKLMNOP"[len(causes)])
                for text in (p.layer_cause, p.tcp_cause)
                if text
            )
            if observed is None:
                mark = _layer_mark(*want)
            elif (seen := observed.get(fixed, {}).get(col)) is None:
                mark = "?"
            else:
                differs = any(
                    s != w and not (w is None and k == 2)
                    for k, (s, w) in enumerate(zip(seen, want, strict=True))
                )
                mark = _layer_mark(*seen) + ("!" if differs else "")
            marks.append(f"{mark + ' ' + letters:<14}")
        print(f"{'vanilla' if not fixed else 'patched':>24}  " + " ".join(marks), file=out)
    for text, letter in causes.items():
        print(f"  {letter}: {text}", file=out)
    print(
        "  each cell: verdict, layer_finished (F yes, . never, _ not started, - nothing to "
        "finish), server_closed_tcp (closed, held, ? not predicted)"
        + ("; !: observed differs from the model" if observed is not None else ""),
        file=out,
    )


def has_patches(release: str) -> bool:
    """Whether gevent-websocket ``release`` has a patched build (its patch series)."""
    return (PATCHES / release).is_dir()


def run_predict(request: Request, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    versions, assumed = model_versions(request)
    for line in assumed:
        print(f"note: {line}", file=out)
    rows = prediction_grid(request.name, versions)
    if not has_patches(versions[GWS]):
        rows = {arm: cells for arm, cells in rows.items() if not arm[1]}
        print(
            f"note: no patch series for gevent-websocket {versions[GWS]} "
            f"(patches/{GWS}/ has {sorted(p.name for p in PATCHES.iterdir())}): vanilla only",
            file=out,
        )
    print_grid(
        f"model: {request.name} (gevent-websocket {versions[GWS]}, newrelic "
        f"{versions['newrelic']})",
        _full(rows),
        versions,
        out,
    )
    builds = [fixed for fixed in BOOLS if not fixed or has_patches(versions[GWS])]
    for rule in ("gevent", "Werkzeug"):
        if request.served_layers() and rule not in versions:
            print(
                f"note: {rule} is not pinned exactly: the layers' rules that depend on "
                "it are read as if it were older than their thresholds",
                file=out,
            )
    for layer, name in request.served_layers().items():
        print_layer_grid(
            f"model: layer {layer} ({request.requirements[name]})",
            layer_grid(request.name, layer, versions, builds),
            out,
        )
        ran = layer_sessions_ran(layer, name)
        if request.exact(name) not in ran.values():
            print(
                f"note: the layer sessions observed {layer}'s facts ([tool.layers.{layer}]) at "
                + ", ".join(f"{name} {v} ({stack})" for stack, v in ran.items())
                + f"; at {request.requirements[name]} they are the model's assumption, "
                "unproven until `nox -s stack` serves it",
                file=out,
            )
    return 0


def _full(rows: Grid) -> Grid:
    return {arm: rows.get(arm) or {} for arm in ARMS if arm in rows}
