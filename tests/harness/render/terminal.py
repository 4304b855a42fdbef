"""The report on the terminal: one compact grid per run, coloured when the terminal can.

rich decides about colour: none when stdout is not a terminal or NO_COLOR is set,
forced with FORCE_COLOR (the GitHub workflow sets it).
"""

from __future__ import annotations

import os

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..cells import COLUMN_AXES
from ..inputs import Data
from . import layout
from .text import conclusion_text, handler_figures, outcome, protocol_counts

STYLE = {
    "v-pass": "bold black on green",
    "v-fail": "bold white on red",
    "v-missing": "bold black on yellow",
    "v-skipped": "black on white",
    "v-notrun": "dim",
}
PIPE_WIDTH = 160
MARK_STYLE = {
    "seed": "bold yellow",
    "reference": "bold cyan",
    "model": "bold magenta",
    "open": "",
    "frame": "bold red",
    "controls": "bold red",
    "unfinished": "bold yellow",
    "tcp": "bold red",
}


def cell_text(row: Data | None) -> Text:
    text = Text(layout.glyph(row), style=STYLE[layout.verdict_class(row)])
    symbols = {k: t for k, t, _, _ in layout.MARKS}
    for mark in layout.marks(row):
        text.append(symbols[mark], style=MARK_STYLE[mark])
    if row and row.get("cause_letter"):
        text.append(row["cause_letter"], style="bold")
    return text


def grid_table(report: Data) -> Table:
    """Every stack's grid under the seed's published one, columns aligned; fits 80 columns."""
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold"
    )
    table.add_column("\n".join(COLUMN_AXES), justify="right", no_wrap=True)
    for column in layout.COLUMNS:
        table.add_column("\n".join(layout.on(v) for v in column), justify="left", no_wrap=True)
    grids = [layout.reference_grid(report, "today")]
    grids += [
        (f"{stack} stack", layout.grid(data["rows"]))
        for stack, data in report["stacks"].items()
        if data.get("rows")
    ]
    for index, (name, rows) in enumerate(grids):
        table.add_row(Text(name, style="bold", justify="left"), *[""] * len(layout.COLUMNS))
        for i, row in enumerate(rows):
            table.add_row(
                row["label"],
                *(cell_text(c) for c in row["cells"]),
                end_section=i == len(rows) - 1 and index < len(grids) - 1,
            )
    return table


def legend(report: Data) -> str:
    marks = ", ".join(f"{t} {m}" for _, t, _, m in layout.legend_marks(report))
    return (
        f"+ pass, - fail, ? no observation (missing session), s skipped; {marks}; "
        "A, B, ... the cause below"
    )


def stack_lines(stack: str, data: Data) -> list[str]:
    if data.get("status") == "not run":
        return [f"{stack} stack: not run"]
    lines = [
        f"{stack} stack: {data['versions']}",
        f"  reproduced {data['reproduced']}/{data['observed']} seed cells; seed's "
        f"conclusion: {conclusion_text(data['conclusion'])}",
    ]
    if data.get("differs_from_reference") is not None:
        lines.append(
            f"  differs from {data['reference']} in {data['differs_from_reference']} "
            "cells of the same arms"
        )
    lines += [f"  {c['letter']}: {c['text']} ({len(c['cells'])} cells)" for c in data["causes"]]
    return lines


def protocol_lines(report: Data) -> list[Table | str]:
    lines: list[Table | str] = []
    protocol = report.get("protocol") or {}
    for stack, data in protocol.get("stacks", {}).items():
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            title=f"protocol checks, {stack} stack (vanilla / patched +fixed)",
            title_justify="left",
        )
        for name in ("check", *protocol["builds"], "defect (vanilla)"):
            table.add_column(name)
        for r in data["rows"]:
            table.add_row(
                Text(r["check"]),
                *(Text(outcome(r[build]["outcome"])) for build in protocol["builds"]),
                Text(r["defect"] or "(control: no defect)"),
            )
        lines += [table, protocol_counts(data), f"({protocol['legend']})"]
    return lines


def extra_lines(report: Data) -> list[str]:
    lines = []
    which = report.get("handlers")
    if which:
        for row in which["rows"]:
            lines.append(
                "which handler: "
                + "; ".join(
                    f"{column} {text}" if column != "handler" else text
                    for column, text, _link in handler_figures(row, which["layers_absent"])
                    if column != "Python 2.7"
                )
            )
    conf = report.get("conformance")
    if conf:
        for target in conf["targets"]:
            counts = target["counts"]["behavior"]
            lines.append(
                f"Autobahn {target['target']} ({target['build']}): "
                + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                + f" of {target['cases']} cases"
            )
    hist = report.get("history")
    if hist:
        for pkg in hist["packages"]:
            flips = (
                "; ".join(
                    f"{f['before']} -> {f['after']} flips {len(f['cells'])} cells"
                    for f in pkg["flips"]
                )
                or "no flip"
            )
            lines.append(
                f"history {pkg['package']} ({pkg['stack']}, {len(pkg['probed'])} "
                f"releases probed): {flips}"
            )
    for t in report.get("timing") or []:
        lines.append(
            f"cell time, {t['group']} (median of {t['n']}): start {t['start']:.2f} s, "
            f"exchange {t['exchange']:.2f} s, stop {t['stop']:.2f} s"
        )
    bench = report.get("bench")
    if bench:
        misses = [f["figure"] for f in bench["figures"] if f["verdict"] == "miss"]
        lines.append(
            f"bench ({bench['started']}): {len(bench['figures'])} figures, "
            f"targets missed: {', '.join(misses) or 'none'} (report/bench.md)"
        )
    return lines


def render(report: Data, console: Console | None = None) -> None:
    if console is None:
        # NO_COLOR: rich would drop the colours but keep bold; plain means plain.
        plain = bool(os.environ.get("NO_COLOR"))
        console = Console(highlight=False, markup=False, color_system=None if plain else "auto")
        if not console.is_terminal:  # a log: no reader's width to fit, so do not fold
            console.width = PIPE_WIDTH
    console.print()
    console.print(grid_table(report))
    console.print(legend(report), soft_wrap=True)
    for stack, data in report["stacks"].items():
        for line in stack_lines(stack, data):
            console.print(line, soft_wrap=True)
    for item in [*protocol_lines(report), *extra_lines(report)]:
        console.print(item, soft_wrap=isinstance(item, str))
    if report["problems"]:
        console.print("\nPROBLEMS:", style="bold red")
        for problem in report["problems"]:
            console.print(f"  - {problem}", soft_wrap=True)
