"""The report's optional inputs, each shown when its file exists and never required.

- results/conformance.json: Autobahn|Testsuite per target (`nox -s conformance`);
- report/history.json: where each package's releases flip a cell (`nox -s history`);
- report/bench.json: the benchmark's figures (`nox -s bench`, tests/bench/report.py);
- and, always, the cells' own time split (start / exchange / stop) from this run's results.

Each is read through tests/harness/records.py: a file of another schema, or not
JSON, is a problem (named, with the command that rewrites it), never a silent gap.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from . import records, timing
from .cells import Cell
from .records import CONFORMANCE_RERUN, ConformanceResults, HistoryResults, SchemaError

CONFORMANCE = "conformance.json"
HISTORY = "history.json"
BENCH = "bench.json"
OUTCOMES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def _read(path, problems, read):
    if not path.is_file():
        return None
    try:
        return read(path)
    except SchemaError as exc:
        problems.append(str(exc))
        return None


def read_history(report_dir, problems):
    """report/history.json as HistoryResults, or None (absent or unreadable: a problem)."""
    return _read(Path(report_dir) / HISTORY, problems, lambda path: records.read(
        path, HistoryResults, lambda doc: records.history_rerun(
            " / ".join(sorted(doc.get("packages") or {})) or "<package>")))


def optional(results_dir, report_dir, problems, history):
    results, report = Path(results_dir), Path(report_dir)
    return {
        "conformance": conformance(_read(results / CONFORMANCE, problems, lambda path: records.read(
            path, ConformanceResults, CONFORMANCE_RERUN)), report),
        "history": history_data(history),
        "bench": bench(_read(report / BENCH, problems,
                             lambda path: records.load_json(path, "`nox -s bench`"))),
    }


def _counts(counts):
    counts = counts or {}
    out = {k: int(counts.get(k) or 0) for k in OUTCOMES}
    out.update({k: v for k, v in counts.items() if k not in out and isinstance(v, int)})
    return out


def conformance(doc, report_dir):
    if doc is None:
        return None
    targets = []
    for name, target in doc.targets.items():
        counts = {what: _counts(target.counts.get(what)) for what in ("behavior", "behaviorClose")}
        link = None
        if target.report_dir:  # relative to the page, which lives in report/
            path = Path(target.report_dir)
            link = str(path.relative_to(report_dir.name)) if path.parts[:1] == (
                report_dir.name,) else str(path)
            link = link.rstrip("/") + "/index.html"
        targets.append({"target": name, "stack": target.stack, "fixed": target.fixed,
                        "build": target.gevent_websocket, "counts": counts,
                        "cases": sum(counts["behavior"].values()),
                        **_non_ok(target.non_ok), "link": link})
    return {"targets": targets, "duration": doc.duration, "outcomes": list(OUTCOMES)}


def _non_ok(cases):
    """The cases to read one by one, and the UNIMPLEMENTED ones (extensions) as a count."""
    listed, unimplemented = [], []
    for c in cases:
        if c.behavior == "UNIMPLEMENTED" and c.behaviorClose in ("OK", "UNIMPLEMENTED"):
            unimplemented.append(c.case)
            continue
        listed.append(asdict(c))
    groups = sorted({case.split(".")[0] for case in unimplemented}, key=_case_order)
    return {"non_ok": listed, "unimplemented": {"count": len(unimplemented), "groups": groups}}


def _case_order(group):
    return (0, int(group)) if group.isdigit() else (1, group)


def history_data(doc):
    """Per package: releases probed, the flips between neighbours, what was skipped."""
    if doc is None:
        return None
    packages = []
    for name, pkg in doc.packages.items():
        skipped = {s.release: s.reason for s in pkg.skipped}
        packages.append({
            "package": name, "stack": pkg.stack,
            "range": [v for v in (pkg.range.first, pkg.range.last) if v],
            "in_range": len(pkg.range.releases),
            "wall_time": pkg.wall_time, "status": pkg.status, "thresholds": pkg.thresholds,
            "probed": [{"version": p.release,
                        "status": "skipped" if p.release in skipped else "ok",
                        "reason": skipped.get(p.release),
                        "passed": sum(v == "+" for v in p.verdicts.values()),
                        "cells": len(p.verdicts)} for p in pkg.probed],
            "flips": [_flip(f) for f in pkg.flips],
            "skipped": [{"version": s.release, "reason": s.reason} for s in pkg.skipped],
        })
    return {"packages": packages}


def _flip(flip):
    cells = []
    for label, (before, after) in flip.changed.items():
        cell = Cell.parse(label)
        cells.append({"key": label, "label": cell.label(), "before": before, "after": after,
                      "id": cell.slug()})
    return {"before": flip.before, "after": flip.after, "cells": cells, "diff": flip.diff}


def bench(doc):
    """The bench's figures table (tests/bench/report.py), and what the charts draw."""
    if doc is None:
        return None
    throughput = doc.get("throughput") or {}
    ratios = [{"name": name, "median": r.get("median"), "min": r.get("min"),
               "max": r.get("max"), "n": r.get("n"), "target": r.get("target")}
              for name, r in (throughput.get("ratios") or {}).items()
              if r.get("median") is not None]
    figures = [dict(zip(("figure", "value", "target", "verdict", "note"), row, strict=True))
               for row in doc.get("figures") or []]
    return {"started": doc.get("started"), "machine": doc.get("machine") or {},
            "load": doc.get("load") or {}, "figures": figures, "ratios": ratios,
            "cells": split_rows(doc.get("cells") or {})}


def split_rows(stats):
    """The chart's rows from timing.phase_stats(): per group, each phase's median."""
    return [{"group": group, "n": d["duration"]["n"],
             **{phase: d[phase]["median"] for phase in timing.PHASES},
             "p90": {phase: d[phase]["p90"] for phase in timing.PHASES}}
            for group, d in stats.items() if all(d.get(k) for k in ("duration", *timing.PHASES))]


def cell_timing(sessions):
    """Per stack and agent setting, the median cell split into start / exchange / stop
    (records.Phases: every cell's own split)."""
    return split_rows(timing.phase_stats(
        record for doc in sessions.values() for record in doc.cells))
