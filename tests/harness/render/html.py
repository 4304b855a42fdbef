"""report/index.html: one self-contained page (templates/index.html.j2, page.css, page.js).

No network: the style and the script are inlined, the charts are HTML and CSS.
Every cell links to its evidence (#ev-<cell id>), shown as a panel by :target.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..inputs import Data
from . import layout
from .jinja import environment

TRANSCRIPT_ARROW = {"received": "←", "sent": "→"}


def transcript_line(event: Data) -> tuple[str, str]:
    kind = event.get("event", "?")
    if kind in TRANSCRIPT_ARROW:
        return kind, f"{TRANSCRIPT_ARROW[kind]} {event.get('data')}"
    if kind == "open":
        return kind, f"open {event.get('url', '')}"
    if kind == "closed":
        valid = "valid" if event.get("valid") else "INVALID"
        return kind, (
            f"closed by {event.get('by', '?')}, code {event.get('code')}, "
            f"reason {event.get('reason')!r}: {valid} close frame"
        )
    return kind, kind + " " + fields(event, ("event",))


def fields(event: Data, skip: Sequence[str] = ("event", "at")) -> str:
    return " ".join(f"{k}={v}" for k, v in event.items() if k not in skip)


def scale(
    values: Sequence[float | None], targets: Sequence[float | None] = (), pad: float = 0.05
) -> tuple[float, float]:
    """(low, high) of a chart's axis around every value and target."""
    points = [v for v in (*values, *targets) if v is not None]
    low, high = min(points), max(points)
    margin = (high - low) * pad or 0.05
    return low - margin, high + margin


def ratio_chart(ratios: list[Data]) -> Data | None:
    """Per ratio: median, spread and target as percentages of one shared axis."""
    if not ratios:
        return None
    low, high = scale(
        [v for r in ratios for v in (r["min"], r["max"], r["median"])],
        [1.0, *(r["target"] for r in ratios if r.get("target"))],
    )

    def pos(v: float | None) -> float | None:
        return None if v is None else round(100 * (v - low) / (high - low), 2)

    return {
        "low": low,
        "high": high,
        "one": pos(1.0),
        "rows": [
            {
                **r,
                "x_min": pos(r["min"]),
                "x_max": pos(r["max"]),
                "x_median": pos(r["median"]),
                "x_target": pos(r.get("target")),
            }
            for r in ratios
        ],
    }


def split_chart(groups: list[Data]) -> list[Data] | None:
    """Stacked bars start / exchange / stop, on one scale (the longest cell)."""
    if not groups:
        return None
    longest = max(g["start"] + g["exchange"] + g["stop"] for g in groups) or 1
    return [
        {
            **g,
            "total": g["start"] + g["exchange"] + g["stop"],
            "w": {k: round(100 * g[k] / longest, 2) for k in ("start", "exchange", "stop")},
        }
        for g in groups
    ]


def count_bar(
    counts: dict[str, int],
    outcomes: Sequence[str],
) -> list[tuple[str, int, float]]:
    total = sum(counts.get(o, 0) for o in outcomes) or 1
    return [
        (o, counts.get(o, 0), round(100 * counts.get(o, 0) / total, 2))
        for o in outcomes
        if counts.get(o, 0)
    ]


def render(report: Data) -> str:
    stacks = []
    for stack, data in report["stacks"].items():
        if data.get("status") == "not run":
            stacks.append({"name": stack, "data": data, "grid": None, "reference": None})
            continue
        stacks.append(
            {
                "name": stack,
                "data": data,
                "grid": layout.grid(data["rows"]),
                "reference": layout.reference_grid(report, stack),
            }
        )
    panel_stacks = [{"name": s["name"], "rows": s["data"]["rows"]} for s in stacks if s["grid"]]
    for stack, data in ((report.get("layers") or {}).get("stacks") or {}).items():
        panel_stacks.append(
            {
                "name": stack,
                "rows": [
                    r
                    for layer in data["layers"]
                    for b in layer["builds"]
                    for r in b["rows"]
                    if r.get("status") == "observed"
                ],
            }
        )
    bench = report.get("bench") or {}
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            report=report,
            stacks=stacks,
            transcript_line=transcript_line,
            fields=fields,
            timing=split_chart(report.get("timing") or []),
            bench_split=split_chart(bench.get("cells") or []),
            ratios=ratio_chart(bench.get("ratios") or []),
            count_bar=count_bar,
            panel_stacks=panel_stacks,
            cell_ids={r["id"] for s in stacks if s["grid"] for r in s["data"]["rows"]},
        )
    )
