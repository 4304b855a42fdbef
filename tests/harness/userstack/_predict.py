"""The model's grid for a stack, from its pins alone (``--predict``), with the causes; and
the observed grid printed beside it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..builds import PATCHES
from ..cells import ARMS, BOOLS, HANDLERS, Cell, build_version, layer_sessions_ran
from ..model import AGENT_SKIPS_WEBSOCKETS, Prediction, StackFacts, handler_words, predict
from ..render.layout import FINISHED_GLYPH
from ._request import GWS, LAST_GWS, Request, served_handler

Arm = tuple[bool, bool]  # (agent, fixed): a row of the grid
Column = tuple[bool, bool, bool]  # (rum, hello_goodbyer, streaming)
Grid = dict[Arm, dict[Column, Prediction]]
Observed = dict[Arm, dict[Column, tuple[str, bool]]]  # (verdict, iterable closed)

COLUMNS = [(r, h, s) for r in BOOLS for h in BOOLS for s in BOOLS]


def model_versions(request: Request) -> tuple[dict[str, str], list[str]]:
    """{the handler (gevent-websocket or one of [tool.handlers]), newrelic} for the
    model, and what had to be assumed."""
    assumed = []
    handler = request.handler()
    last = LAST_GWS if handler == GWS else HANDLERS[handler]["version"]
    gws = request.exact(handler)
    if gws is None:
        gws = last
        assumed.append(
            f"{handler} is not pinned exactly: assumed {last}, "
            + ("its last release" if handler == GWS else "the release pyproject.toml pins")
        )
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
    return {handler: gws, "newrelic": nr, **{n: v for n, v in rules.items() if v}}, assumed


def arms(versions: Mapping[str, str]) -> list[Arm]:
    """The grid's rows: agent x vanilla/patched on gevent-websocket; agent alone on another
    handler (one build, fixed False: nothing of it is patched)."""
    return ARMS if served_handler(versions) == GWS else [(a, False) for a in BOOLS]


def stack_facts(versions: Mapping[str, str], fixed: bool, handler: str | None = None) -> StackFacts:
    """The model's facts of one build of a stack with these versions, served by
    ``handler`` (default: the one the versions name)."""
    handler = handler or served_handler(versions)
    if handler != GWS:  # [tool.handlers.<name>.model], whatever the release
        return StackFacts.from_versions(versions, handler)
    return StackFacts.from_versions({**versions, GWS: build_version(versions[GWS], fixed)})


def unproven(versions: Mapping[str, str]) -> str | None:
    """Why the model's facts of another handler are an assumption at this release (the
    handler sessions observed them at pyproject.toml's), or None."""
    handler = served_handler(versions)
    if handler == GWS or versions[handler] == HANDLERS[handler]["version"]:
        return None
    return (
        f"the handler sessions observed {handler}'s facts ([tool.handlers.{handler}.model]) "
        f"at {HANDLERS[handler]['version']}; at {versions[handler]} they are the model's "
        "assumption, unproven until this release's cells run"
    )


def predict_cell(cell: Cell, versions: Mapping[str, str]) -> Prediction:
    """The model's prediction for one cell of a stack with these versions."""
    return predict(cell, stack_facts(versions, cell.fixed, cell.handler))


def prediction_grid(name: str, versions: dict[str, str]) -> Grid:
    """{(agent, fixed): {(rum, hg, streaming): Prediction}} for the given versions."""
    handler = served_handler(versions)
    return {
        (agent, fixed): {
            col: predict_cell(Cell(name, agent, fixed, *col, handler=handler), versions)
            for col in COLUMNS
        }
        for agent, fixed in arms(versions)
    }


def cause(
    versions: dict[str, str],
    fixed: bool,
    prediction: Prediction,
    streaming: bool,
    handler: str | None = None,
) -> str:
    """Why the model predicts what it does for one cell, in a sentence (one per kind), on
    ``handler`` (default: the one the versions name)."""
    if not (prediction.lazy_layers or streaming):
        return ""
    lazy = (
        "its lazy layers (the streaming response's iterator, the HelloGoodbyer "
        "generator, the agent's RUM middleware below newrelic "
        f"{AGENT_SKIPS_WEBSOCKETS})"
    )
    handler = handler or served_handler(versions)
    facts = stack_facts(versions, fixed, handler)
    if handler != GWS:
        if streaming and prediction.iterator is False:
            return (
                f"{handler} drops what the view "
                "returns (keeps_view_result = false), so the streaming response's "
                "iterator never runs"
            )
        if not facts.keeps_view_result:  # the streaming view's iterator is dropped
            lazy = lazy.replace("the streaming response's iterator, ", "")
        return f"{handler_words(facts)}, so {lazy} run"
    gws = build_version(versions[GWS], fixed)
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
        label = f"agent {'on' if agent else 'off'} · {build_label(served_handler(versions), fixed)}"
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
    handler = served_handler(versions)
    return {
        fixed: {
            col: predict_cell(
                Cell(name, False, fixed, False, *col, handler=handler, layer=layer), versions
            )
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


def build_label(handler: str, fixed: bool) -> str:
    """A row's build: gevent-websocket's vanilla or patched, or the other handler's name."""
    return handler if handler != GWS else "patched" if fixed else "vanilla"


def print_layer_grid(
    title: str,
    rows: LayerGrid,
    out: TextIO | None = None,
    observed: LayerObserved | None = None,
    handler: str = GWS,
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
        print(f"{build_label(handler, fixed):>24}  " + " ".join(marks), file=out)
    for text, letter in causes.items():
        print(f"  {letter}: {text}", file=out)
    print(
        "  each cell: verdict, layer_finished (F yes, . never, _ not started, - nothing to "
        "finish), server_closed_tcp (closed, held, ? not predicted)"
        + ("; !: observed differs from the model" if observed is not None else ""),
        file=out,
    )


def builds_of(versions: Mapping[str, str]) -> list[bool]:
    """The builds a stack runs (fixed False, True): gevent-websocket's vanilla, and patched
    where its release has a patch series; another handler's one build (False)."""
    if served_handler(versions) != GWS:
        return [False]
    return [fixed for fixed in BOOLS if not fixed or has_patches(versions[GWS])]


def grid_title(name: str, versions: Mapping[str, str]) -> str:
    handler = served_handler(versions)
    return f"model: {name} ({handler} {versions[handler]}, newrelic {versions['newrelic']})"


def has_patches(release: str) -> bool:
    """Whether gevent-websocket ``release`` has a patched build (its patch series)."""
    return (PATCHES / release).is_dir()


def run_predict(request: Request, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    versions, assumed = model_versions(request)
    for line in assumed:
        print(f"note: {line}", file=out)
    handler = served_handler(versions)
    builds = builds_of(versions)
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if arm[1] in builds}
    if handler == GWS and not has_patches(versions[GWS]):
        print(
            f"note: no patch series for gevent-websocket {versions[GWS]} "
            f"(patches/{GWS}/ has {sorted(p.name for p in PATCHES.iterdir())}): vanilla only",
            file=out,
        )
    if note := unproven(versions):
        print(f"note: {note}", file=out)
    print_grid(grid_title(request.name, versions), _full(rows), versions, out)
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
            handler=handler,
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
