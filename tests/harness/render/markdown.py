"""report/observations.md: what the GitHub job summary shows (templates/observations.md.j2)."""

from __future__ import annotations

from ..cells import COLUMN_AXES
from ..inputs import Data
from . import layout
from .jinja import environment

EMOJI = {"v-pass": "🟩", "v-fail": "🟥", "v-missing": "🟨", "v-skipped": "⬜", "v-notrun": "⬜"}


def cell(row: Data | None) -> str:
    """🟩 + ≠ A: the verdict coloured, then the cell's marks and its cause's letter."""
    page = {k: p for k, _, p, _ in layout.MARKS}
    text = f"{EMOJI[layout.verdict_class(row)]} {layout.glyph(row)}"
    marks = "".join(page[m] for m in layout.marks(row))
    letter = (row or {}).get("cause_letter") or ""
    return f"{text} {marks}{letter}".rstrip()


def seed_list_line(row: Data) -> str:
    """The seed's own notation: `fixed,rum,hello_goodbyer,streaming: verdict`."""
    flags = ",".join(str(row[k]) for k in ("fixed", *COLUMN_AXES))
    if row["status"] != "observed":
        return f"{flags}: ({row['status']})"
    diff = " **≠**" if row["differs_from_seed"] else ""
    cause = f" (cause {row['cause_letter']})" if row.get("cause_letter") else ""
    return (
        f"{flags}: {row['verdict']} (seed: {row['seed']}){diff}{cause}; closed: "
        f"{'yes' if row['closed'] else 'no'}; close frame: "
        f"{'valid' if row['valid_close_frame'] else 'invalid'}"
    )


def render(report: Data) -> str:
    grids = [layout.reference_grid(report, "today")]
    grids += [
        (f"{stack} stack", layout.grid(data["rows"]))
        for stack, data in report["stacks"].items()
        if data.get("rows")
    ]
    return (
        environment()
        .get_template("observations.md.j2")
        .render(report=report, grids=grids, cell=cell, seed_list_line=seed_list_line, emoji=EMOJI)
    )
