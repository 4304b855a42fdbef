"""Where cells' time goes, over many cells: the report's and the bench's one summary.

Each cell records its own split (tests/harness/records.py ``Phases``); this groups
them by stack and agent setting and takes their distribution.
"""

from __future__ import annotations

import statistics

PHASES = ("start", "exchange", "stop")
GROUP_ORDER = ("today", "seed")  # then the other stacks, by name


def p90(values):
    values = sorted(values)
    return values[int(0.9 * (len(values) - 1))]


def dist(values):
    if not values:
        return None
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "p90": round(p90(values), 3), "max": round(max(values), 3)}


def group(cell):
    return f"{cell.stack} agent {'on' if cell.agent else 'off'}"


def _order(name):
    stack = name.split()[0]
    return (GROUP_ORDER.index(stack) if stack in GROUP_ORDER else len(GROUP_ORDER), name)


def phase_stats(cell_records):
    """{group: {"duration" and each phase: dist}} in display order, over CellRecords."""
    groups = {}
    for record in cell_records:
        g = groups.setdefault(group(record.cell), {k: [] for k in ("duration", *PHASES)})
        g["duration"].append(record.duration)
        for phase in PHASES:
            g[phase].append(getattr(record.phases, phase))
    return {name: {what: dist(v) for what, v in groups[name].items()}
            for name in sorted(groups, key=_order)}
