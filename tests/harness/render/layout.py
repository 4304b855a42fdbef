"""The grid every renderer draws, and what marks a cell.

Rows are agent x fixed, columns rum x hello_goodbyer x streaming (off first, so
the lazy layers add up to the right); the seed's published verdicts, or another
stack's (deploy is compared with today), fill a grid of the same shape beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from ..cells import BOOLS, COLUMN_AXES, Cell, seed_verdict
from ..inputs import Data
from ..records import NOT_STARTED

ROWS = [(True, True), (True, False), (False, True), (False, False)]  # (agent, fixed): arms
# One BOOLS per COLUMN_AXES (not repeat=3): mypy then knows each column is 3 bools.
COLUMNS = list(itertools.product(BOOLS, BOOLS, BOOLS))
VERDICT_CLASS = {"+": "v-pass", "-": "v-fail"}
STATUS_CLASS = {"missing": "v-missing", "skipped": "v-skipped", "not run": "v-notrun"}
# (key, terminal mark, page mark, meaning), in the order a cell shows them
Mark = tuple[str, str, str, str]
MARKS: tuple[Mark, ...] = (
    ("seed", "*", "≠", "differs from the seed's published verdict"),
    (
        "reference",
        "~",
        "≈",
        "differs from today's stack (same arm: verdict, closed or close frame)",
    ),
    ("model", "!", "!", "disagrees with the expectation model"),
    ("open", "o", "○", "the server never called close() on the iterable (PEP 3333)"),
    ("frame", "x", "✗", "the websocket did not end with a valid close frame"),
    ("controls", "c", "⚠", "a positive control failed: the server is not what the cell claims"),
    (
        "died",
        "d",
        "†",
        "the server died of a defect the model allows (a race): what it cut short is no evidence",
    ),
    (
        "unfinished",
        "u",
        "◔",
        "the exchange passed, but the layer (agent or request layer) never "
        "finished its request work",
    ),
    (
        "tcp",
        "t",
        "⧖",
        "the server did not close TCP within the client's bound after the closing "
        "handshake (RFC 6455 7.1.1)",
    ),
)
# The layers section's grid: rows the layer on / off, columns hello_goodbyer x streaming.
LAYER_COLUMNS = list(itertools.product(BOOLS, BOOLS))
# "_": never started, the server's call never reached the layer (records.NOT_STARTED)
FINISHED_GLYPH = {True: "F", False: ".", NOT_STARTED: "_", None: "-"}


def legend_marks(report: Data) -> list[Mark]:
    """MARKS, without the reference mark when no stack is read against another stack."""
    other = any(d.get("reference", "seed") != "seed" for d in report["stacks"].values())
    return [m for m in MARKS if other or m[0] != "reference"]


def cell_of(row: Data, stack: str = "") -> Cell:
    return Cell.from_dict({**row, "stack": stack or row.get("stack", "")})


def title(row: Data, stack: str) -> str:
    """A cell's label: today agent ¬fixed rum ¬hello_goodbyer streaming."""
    return cell_of(row, stack).label()


def on(value: object) -> str:
    return "on" if value else "off"


def row_label(agent: bool, fixed: bool) -> str:
    return f"agent {on(agent)} · fixed {on(fixed)}"


def column_headers() -> list[tuple[str, list[tuple[str, int]]]]:
    """Per axis, [(label, span)]: the grid's three header rows."""
    out = []
    for depth, axis in enumerate(COLUMN_AXES):
        span = 2 ** (len(COLUMN_AXES) - depth - 1)
        out.append((axis, [(on(c[depth]), span) for c in COLUMNS[::span]]))
    return out


def grid(rows: Iterable[Data]) -> list[Data]:
    """[{agent, fixed, label, cells: [row or None] x 8}] in ROWS order."""
    by_cell = {cell_of(r).on(""): r for r in rows}
    return [
        {
            "agent": a,
            "fixed": f,
            "label": row_label(a, f),
            "cells": [by_cell.get(Cell("", a, f, *c)) for c in COLUMNS],
        }
        for a, f in ROWS
    ]


def reference_grid(report: Data, stack: str) -> tuple[str, list[Data]]:
    """The grid a stack is read against: the seed's published one, or another stack's."""
    ref = report["stacks"][stack].get("reference", "seed")
    if ref != "seed" and ref in report["stacks"]:
        rows = [{**r, "verdict": r.get("verdict")} for r in report["stacks"][ref]["rows"]]
        return f"{ref} stack (this run)", grid(rows)
    cells = [Cell("seed", a, f, *c) for a, f in ROWS for c in COLUMNS]
    rows = [
        {**cell.as_dict(), "status": "observed", "verdict": seed_verdict(cell)} for cell in cells
    ]
    return "seed (published, 2016)", grid(rows)


def verdict_class(row: Data | None) -> str:
    if row is None:
        return "v-missing"
    if row.get("status", "observed") != "observed":
        return STATUS_CLASS.get(row["status"], "v-missing")
    return VERDICT_CLASS.get(row.get("verdict") or "", "v-missing")  # None: no verdict


def marks(row: Data | None) -> list[str]:
    """The keys of MARKS that apply to an observed cell."""
    if not row or row.get("status") != "observed":
        return []
    died = bool(row.get("died_of"))  # what the death cut short is no disagreement
    found = {
        "seed": row.get("differs_from_seed"),
        "reference": bool(row.get("reference_differs")),
        "model": not row.get("matches_model", True) and not died,
        "open": not row.get("closed", True),
        "frame": not row.get("valid_close_frame", True),
        "controls": bool(row.get("controls_failed")) and not died,
        "died": died,
        "unfinished": row.get("verdict") == "+" and row.get("layer_finished") is False,
        "tcp": row.get("server_closed_tcp") is False,
    }
    return [k for k, *_ in MARKS if found.get(k)]


def layer_grid(build: Data) -> list[Data]:
    """[{label, cells: [row] x 4}] of one build of a layer: the layer on, then off (in the
    stack's control_layer() only: one layer-off control per stack and build)."""
    rows = build["rows"]
    out = []
    for on_layer in (True, False) if any(r["layer"] == "none" for r in rows) else (True,):
        found = {
            (r["hello_goodbyer"], r["streaming"]): r
            for r in rows
            if (r["layer"] != "none") == on_layer
        }
        name = next((r["layer"] for r in rows if r["layer"] != "none"), "?")
        out.append(
            {
                "label": f"{name} {build['build']}" if on_layer else f"no layer {build['build']}",
                "cells": [found.get(c) for c in LAYER_COLUMNS],
            }
        )
    return out


def finished_glyph(row: Data | None, expected: bool = False) -> str:
    if not row or row.get("status") != "observed":
        return ""
    return FINISHED_GLYPH[row.get("expected_layer_finished" if expected else "layer_finished")]


def glyph(row: Data | None) -> str:
    """The verdict as one character; '?' missing, 's' skipped, '·' not run."""
    if row is None:
        return "?"
    status = row.get("status", "observed")
    if status == "observed":
        return row.get("verdict") or "?"
    return {"skipped": "s", "not run": "·"}.get(status, "?")


def describe(row: Data | None, stack: str = "") -> str:
    """A cell in words (the page's tooltip and the drill-down's heading)."""
    if row is None:
        return "no observation"
    head = cell_of(row, stack).label(omit=() if stack else ("stack",))
    if row.get("status", "observed") != "observed":
        return f"{head}: {row['status']}"
    parts = [f"observed {row['verdict']}", f"seed {row.get('seed')}"]
    if row.get("expected"):
        parts.append(f"model {row['expected']}")
    if row.get("reference"):
        parts.append(f"today {row['reference']}")
    meaning = {k: m for k, _, _, m in MARKS}
    parts += [meaning[k] for k in marks(row)]
    if row.get("cause_letter"):
        parts.append(f"cause {row['cause_letter']}")
    return f"{head}: " + "; ".join(parts)
