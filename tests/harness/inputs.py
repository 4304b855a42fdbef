"""The report's optional inputs, each shown when its file exists and never required.

- results/conformance.json: Autobahn|Testsuite per target (`nox -s conformance`);
- tests/data/history/<package>.json: where each package's releases flip a cell, as
  `nox -s "history(<package>)"` proved it (committed; the report's default);
- report/bench.json: the benchmark's figures (`nox -s bench`, tests/bench/report.py);
- and, always, the cells' own time split (start / exchange / stop) from this run's results.

Each is read through tests/harness/records.py: a file of another schema, or not
JSON, is a problem (named, with the command that rewrites it), never a silent gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from . import records, timing
from .cells import DEFAULT_HANDLER, HISTORY, Cell
from .records import (
    CONFORMANCE_RERUN,
    ConformanceResults,
    HistoryFlip,
    HistoryPackage,
    HistoryResults,
    HistoryRule,
    NonOkCase,
    SchemaError,
    SessionResults,
)

T = TypeVar("T")
Data = dict[str, Any]  # the report's JSON-shaped data (tests/harness/render)

CONFORMANCE = "conformance.json"
BENCH = "bench.json"
OUTCOMES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def _read(path: Path, problems: list[str], read: Callable[[Path], T]) -> T | None:
    if not path.is_file():
        return None
    try:
        return read(path)
    except SchemaError as exc:
        problems.append(str(exc))
        return None


def read_history(data_dir: str | Path, problems: list[str]) -> HistoryResults | None:
    """Every package file of ``data_dir`` (tests/data/history/) as one HistoryResults, or
    None if there is none; a file that cannot be read is a problem, and left out."""
    found = HistoryResults()
    for path in sorted(Path(data_dir).glob("*.json")):
        if "axes" in HISTORY.get(path.stem, {}):  # a rule on two packages
            rule = _read(
                path,
                problems,
                lambda p: records.read(p, HistoryRule, records.history_update(p.stem)),
            )
            if rule is not None:
                found.rules[path.stem] = rule
            continue
        package = _read(
            path,
            problems,
            lambda p: records.read(p, HistoryPackage, records.history_update(p.stem)),
        )
        if package is None:
            continue
        if package.package != path.stem:
            problems.append(
                f"{path}: holds the history of {package.package!r}, not of "
                f"{path.stem!r}: rerun {records.history_update(path.stem)}"
            )
            continue
        found.packages[package.package] = package
    return found if found.packages or found.rules else None


def optional(
    results_dir: str | Path,
    report_dir: str | Path,
    problems: list[str],
    history: HistoryResults | None,
) -> dict[str, Data | None]:
    results, report = Path(results_dir), Path(report_dir)
    return {
        "conformance": conformance(
            _read(
                results / CONFORMANCE,
                problems,
                lambda path: records.read(path, ConformanceResults, CONFORMANCE_RERUN),
            ),
            report,
        ),
        "history": history_data(history),
        "bench": bench(
            _read(report / BENCH, problems, lambda path: records.load_json(path, "`nox -s bench`"))
        ),
    }


def _counts(counts: Mapping[str, int] | None) -> dict[str, int]:
    counts = counts or {}
    out = {k: int(counts.get(k) or 0) for k in OUTCOMES}
    out.update({k: v for k, v in counts.items() if k not in out and isinstance(v, int)})
    return out


def conformance(doc: ConformanceResults | None, report_dir: Path) -> Data | None:
    if doc is None:
        return None
    targets = []
    for name, target in doc.targets.items():
        counts = {what: _counts(target.counts.get(what)) for what in ("behavior", "behaviorClose")}
        link = None
        if target.report_dir:  # relative to the page, which lives in report/
            path = Path(target.report_dir)
            link = (
                str(path.relative_to(report_dir.name))
                if path.parts[:1] == (report_dir.name,)
                else str(path)
            )
            link = link.rstrip("/") + "/index.html"
        targets.append(
            {
                "target": name,
                "stack": target.stack,
                "fixed": target.fixed,
                "build": (
                    f"{target.handler} {target.handler_version}"
                    if target.handler
                    else target.gevent_websocket
                ),
                "handler": target.handler,
                "excluded": target.excluded,
                "deviations": _deviations(target.excluded),
                "counts": counts,
                "cases": sum(counts["behavior"].values()),
                **_non_ok(target.non_ok),
                "link": link,
            }
        )
    return {"targets": targets, "duration": doc.duration, "outcomes": list(OUTCOMES)}


def _deviations(excluded: dict[str, str]) -> list[Data]:
    """The excluded cases grouped by their reason, in case order (the prose says why)."""
    by_reason: dict[str, list[str]] = {}
    for case, reason in excluded.items():
        by_reason.setdefault(reason, []).append(case)
    groups = sorted(by_reason.items(), key=lambda kv: min(map(_case_key, kv[1])))
    return [
        {"reason": reason, "cases": cases, "count": len(cases), "shown": _case_ranges(cases)}
        for reason, cases in groups
    ]


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(n) for n in case.split(".") if n.isdigit())


def _case_ranges(cases: list[str]) -> str:
    """ "9.1.1 … 9.8.6 (54)" for a long list, the cases themselves for a short one."""
    ordered = sorted(cases, key=_case_key)
    if len(ordered) <= 6:
        return ", ".join(ordered)
    return f"{ordered[0]} … {ordered[-1]} ({len(ordered)} cases)"


def _non_ok(cases: Iterable[NonOkCase]) -> Data:
    """The cases to read one by one, and the UNIMPLEMENTED ones (extensions) as a count."""
    listed, unimplemented = [], []
    for c in cases:
        if c.behavior == "UNIMPLEMENTED" and c.behaviorClose in ("OK", "UNIMPLEMENTED"):
            unimplemented.append(c.case)
            continue
        listed.append(asdict(c))
    groups = sorted({case.split(".")[0] for case in unimplemented}, key=_case_order)
    return {"non_ok": listed, "unimplemented": {"count": len(unimplemented), "groups": groups}}


def _case_order(group: str) -> tuple[int, int | str]:
    return (0, int(group)) if group.isdigit() else (1, group)


def history_data(doc: HistoryResults | None) -> Data | None:
    """Per package: releases probed, the flips between neighbours, what was skipped."""
    if doc is None:
        return None
    packages = []
    # a rule's four searches, each named by its axis and the other axis's release
    searches = [
        (f"{rule}: {pkg.package} at " + ", ".join(f"{p}=={r}" for p, r in pkg.at.items()), pkg)
        for rule, found in doc.rules.items()
        for pkg in found.searches
    ]
    for name, pkg in [*doc.packages.items(), *searches]:
        skipped = {s.release: s.reason for s in pkg.skipped}
        packages.append(
            {
                "package": name,
                "stack": pkg.stack,
                "range": [v for v in (pkg.range.first, pkg.range.last) if v],
                "in_range": len(pkg.range.releases),
                "wall_time": pkg.wall_time,
                "status": pkg.status,
                "thresholds": pkg.thresholds,
                "probed": [
                    {
                        "version": p.release,
                        "status": "skipped" if p.release in skipped else "ok",
                        "reason": skipped.get(p.release),
                        "passed": sum(v == "+" for v in p.verdicts.values()),
                        "cells": len(p.verdicts),
                    }
                    for p in pkg.probed
                ],
                "flips": [_flip(f) for f in pkg.flips],
                "skipped": [{"version": s.release, "reason": s.reason} for s in pkg.skipped],
            }
        )
    return {"packages": packages}


def _flip(flip: HistoryFlip) -> Data:
    cells = []
    for label, (before, after) in flip.changed.items():
        cell = Cell.parse(label)
        cells.append(
            {
                "key": label,
                "label": cell.label(),
                "before": before,
                "after": after,
                "id": cell.slug(),
            }
        )
    return {"before": flip.before, "after": flip.after, "cells": cells, "diff": flip.diff}


def bench(doc: Data | None) -> Data | None:
    """The bench's figures table (tests/bench/report.py), and what the charts draw."""
    if doc is None:
        return None
    throughput = doc.get("throughput") or {}
    ratios = [
        {
            "name": name,
            "median": r.get("median"),
            "min": r.get("min"),
            "max": r.get("max"),
            "n": r.get("n"),
            "target": r.get("target"),
        }
        for name, r in (throughput.get("ratios") or {}).items()
        if r.get("median") is not None
    ]
    figures = [
        dict(zip(("figure", "value", "target", "verdict", "note"), row, strict=True))
        for row in doc.get("figures") or []
    ]
    return {
        "started": doc.get("started"),
        "machine": doc.get("machine") or {},
        "load": doc.get("load") or {},
        "figures": figures,
        "ratios": ratios,
        "cells": split_rows(doc.get("cells") or {}),
        # tests/bench/handler_cost.py's figures: the which-handler table's throughput
        "handlers": doc.get("handlers"),
    }


def split_rows(stats: Mapping[str, Data]) -> list[Data]:
    """The chart's rows from timing.phase_stats(): per group, each phase's median."""
    return [
        {
            "group": group,
            "n": d["duration"]["n"],
            **{phase: d[phase]["median"] for phase in timing.PHASES},
            "p90": {phase: d[phase]["p90"] for phase in timing.PHASES},
        }
        for group, d in stats.items()
        if all(d.get(k) for k in ("duration", *timing.PHASES))
    ]


def cell_timing(sessions: Mapping[str, SessionResults]) -> list[Data]:
    """Per stack and agent setting, the median cell split into start / exchange / stop
    (records.Phases: every cell's own split)."""
    return split_rows(
        timing.phase_stats(
            record
            for doc in sessions.values()
            for record in doc.cells
            if record.cell.handler == DEFAULT_HANDLER
        )
    )  # the handlers' cost: the bench
