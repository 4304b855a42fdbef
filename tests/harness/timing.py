"""Where cells' time goes, over many cells: the report's and the bench's one summary.

Each cell records its own split (tests/harness/records.py ``Phases``); this groups
them by stack and agent setting and takes their distribution.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cells import Cell
    from .records import CellRecord

PHASES = ("start", "exchange", "stop")
GROUP_ORDER = ("today", "seed")  # then the other stacks, by name


def p90(values: Sequence[float]) -> float:
    values = sorted(values)
    return values[int(0.9 * (len(values) - 1))]


def dist(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p90": round(p90(values), 3),
        "max": round(max(values), 3),
    }


def group(cell: Cell) -> str:
    return f"{cell.stack} agent {'on' if cell.agent else 'off'}"


def _order(name: str) -> tuple[int, str]:
    stack = name.split()[0]
    return (GROUP_ORDER.index(stack) if stack in GROUP_ORDER else len(GROUP_ORDER), name)


def phase_stats(
    cell_records: Iterable[CellRecord],
) -> dict[str, dict[str, dict[str, float] | None]]:
    """{group: {"duration" and each phase: dist}} in display order, over CellRecords."""
    groups: dict[str, dict[str, list[float]]] = {}
    for record in cell_records:
        g = groups.setdefault(group(record.cell), {k: [] for k in ("duration", *PHASES)})
        g["duration"].append(record.duration)
        for phase in PHASES:
            g[phase].append(getattr(record.phases, phase))
    return {
        name: {what: dist(v) for what, v in groups[name].items()}
        for name in sorted(groups, key=_order)
    }
