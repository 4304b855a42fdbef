"""The report's optional inputs, each shown when its file exists and never required.

- results/conformance.json: Autobahn|Testsuite per arm (`nox -s conformance`);
- report/history.json: where each package's releases flip a cell (`nox -s history`);
- report/bench.json: the benchmark's figures (`nox -s bench`, tests/bench/report.py);
- and, always, the cells' own time split (start / exchange / stop) from this run's results.

Each loader keeps what it understands and ignores extra keys; a file that is not
JSON is a problem (named, with the fix), never a silent gap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.bench import report as bench_report

CONFORMANCE = "conformance.json"
HISTORY = "history.json"
BENCH = "bench.json"
OUTCOMES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def read_json(path, problems, fix):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        problems.append(f"{path}: not JSON ({exc}); {fix}")
        return None


def optional(results_dir, report_dir, problems):
    results, report = Path(results_dir), Path(report_dir)
    return {
        "conformance": conformance(read_json(results / CONFORMANCE, problems,
                                             "rerun `nox -s conformance` or delete the file"),
                                   report),
        "history": history(read_json(report / HISTORY, problems,
                                     "rerun `nox -s history` or delete the file")),
        "bench": bench(read_json(report / BENCH, problems,
                                 "rerun `nox -s bench` or delete the file")),
    }


def _counts(counts):
    counts = counts or {}
    out = {k: int(counts.get(k) or 0) for k in OUTCOMES}
    out.update({k: v for k, v in counts.items() if k not in out and isinstance(v, int)})
    return out


def conformance(doc, report_dir):
    if not isinstance(doc, dict):
        return None
    arms = []
    for name, arm in (doc.get("arms") or {}).items():
        counts = {what: _counts((arm.get("counts") or {}).get(what))
                  for what in ("behavior", "behaviorClose")}
        directory = arm.get("report_dir")
        link = None
        if directory:  # relative to the page, which lives in report/
            path = Path(directory)
            link = str(path.relative_to(report_dir.name)) if path.parts[:1] == (
                report_dir.name,) else str(path)
            link = link.rstrip("/") + "/index.html"
        arms.append({"arm": name, "stack": arm.get("stack"), "fixed": arm.get("fixed"),
                     "build": arm.get("gevent-websocket"), "counts": counts,
                     "cases": sum(counts["behavior"].values()),
                     **_non_ok(arm.get("non_ok") or []),
                     "link": link})
    return {"arms": arms, "duration": doc.get("duration"), "outcomes": list(OUTCOMES)}


def _non_ok(cases):
    """The cases to read one by one, and the UNIMPLEMENTED ones (extensions) as a count."""
    listed, unimplemented = [], []
    for c in cases:
        if c.get("behavior") == "UNIMPLEMENTED" and c.get("behaviorClose") in (
                None, "OK", "UNIMPLEMENTED"):
            unimplemented.append(str(c.get("case")))
            continue
        listed.append({"case": c.get("case"), "behavior": c.get("behavior"),
                       "behaviorClose": c.get("behaviorClose"),
                       "description": c.get("description") or "", "defect": c.get("defect")})
    groups = sorted({case.split(".")[0] for case in unimplemented}, key=_case_order)
    return {"non_ok": listed, "unimplemented": {"count": len(unimplemented), "groups": groups}}


def _case_order(group):
    return (0, int(group)) if group.isdigit() else (1, group)


def history(doc):
    """Per package: releases probed, the flips between neighbours, what was skipped.

    Tolerant of both notations the history session has used: "version" or "release";
    "range" as [low, high] or {"first", "last"}; a flip's cells as a list ("cells") or
    as {cell: [before, after]} ("changed"), each cell a Cell.slug or the values of the
    package's "cell_fields" joined by commas.
    """
    if not isinstance(doc, dict):
        return None
    packages = []
    for name, pkg in (doc.get("packages") or {}).items():
        fields = pkg.get("cell_fields") or []
        span = pkg.get("range") or []
        if isinstance(span, dict):
            span = [span.get("first") or span.get("low"), span.get("last") or span.get("high")]
        packages.append({
            "package": name, "stack": pkg.get("stack"), "range": [str(v) for v in span if v],
            "in_range": pkg.get("in_range", len((pkg.get("range") or {}).get("releases") or [])
                                if isinstance(pkg.get("range"), dict) else None),
            "wall_time": pkg.get("wall_time"), "status": pkg.get("status"),
            "thresholds": pkg.get("thresholds") or {},
            "probed": [{"version": _release(p), "status": p.get("status", "ok"),
                        "reason": p.get("reason"),
                        "passed": sum(v == "+" for v in (p.get("verdicts") or {}).values()),
                        "cells": len(p.get("verdicts") or {})} for p in pkg.get("probed") or []],
            "flips": [_flip(f, pkg.get("stack"), fields) for f in pkg.get("flips") or []],
            "skipped": [{"version": _release(s), "reason": s.get("reason")}
                        for s in pkg.get("skipped") or []],
        })
    return {"packages": packages}


def _release(entry):
    return entry.get("version") or entry.get("release")


def _flip(flip, stack, fields):
    changed = flip.get("changed") or {c: [None, None] for c in flip.get("cells") or []}
    cells = []
    for key, change in changed.items():
        before, after = (list(change) + [None, None])[:2] if isinstance(change, list) else (
            None, None)
        cells.append({"key": key, "label": cell_label(key, fields), "before": before,
                      "after": after, "id": history_cell_id(key, stack, fields)})
    return {"before": flip.get("before"), "after": flip.get("after"),
            "cells": cells, "diff": flip.get("diff") or ""}


def _flags(key, fields):
    """{field: bool} of a comma-separated cell key, or None for another notation."""
    values = str(key).split(",")
    if not fields or len(values) != len(fields) or not all(
            v in ("True", "False") for v in values):
        return None
    return {f: v == "True" for f, v in zip(fields, values, strict=True)}


def cell_label(key, fields):
    flags = _flags(key, fields)
    if flags is None:
        return str(key)
    return " · ".join(f"{f} {'on' if v else 'off'}" for f, v in flags.items())


# Cell.slug (tests/harness/cells.py): seed-agent=1-fixed=0-rum=1-hello_goodbyer=0-streaming=1
CELL_SLUG = re.compile(r"^(?P<stack>\w+)-agent=(?P<a>[01])-fixed=(?P<f>[01])-rum=(?P<r>[01])"
                       r"-hello_goodbyer=(?P<h>[01])-streaming=(?P<s>[01])$")


def history_cell_id(key, stack=None, fields=()):
    """The page's id of a cell the history names, when the name fixes all five axes."""
    m = CELL_SLUG.match(str(key))
    if m:
        return f"{m['stack']}-a{m['a']}-f{m['f']}-r{m['r']}-h{m['h']}-s{m['s']}"
    flags = _flags(key, fields)
    axes = ("agent", "fixed", "rum", "hello_goodbyer", "streaming")
    if not stack or flags is None or not all(a in flags for a in axes):
        return None
    return stack + "".join(f"-{a[0]}{int(flags[a])}" for a in axes)


def bench(doc):
    """The bench's figures table (tests/bench/report.py), and what the charts draw."""
    if not isinstance(doc, dict):
        return None
    throughput = doc.get("throughput") or {}
    ratios = [{"name": name, "median": r.get("median"), "min": r.get("min"),
               "max": r.get("max"), "n": r.get("n"), "target": r.get("target")}
              for name, r in (throughput.get("ratios") or {}).items()
              if r.get("median") is not None]
    try:
        figures = [dict(zip(("figure", "value", "target", "verdict", "note"), row, strict=True))
                   for row in bench_report.figures(doc)]
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        figures = [{"figure": f"figures unreadable ({type(exc).__name__}: {exc})",
                    "value": "", "target": "", "verdict": "", "note": "rerun `nox -s bench`"}]
    return {"started": doc.get("started"), "machine": doc.get("machine") or {},
            "load": doc.get("load") or {}, "figures": figures, "ratios": ratios,
            "cells": split_from_bench(doc.get("cells") or {})}


def split_from_bench(cells):
    out = []
    for group, d in cells.items():
        if group == "all" or not all(d.get(k) for k in ("ready", "exchange", "rest")):
            continue
        out.append({"group": group, "start": d["ready"]["median"],
                    "exchange": d["exchange"]["median"], "stop": d["rest"]["median"],
                    "n": (d.get("duration") or {}).get("n")})
    return out


def cell_timing(sessions):
    """Per stack and agent setting, the median cell split into start / exchange / stop.

    start: server spawn to its readiness line; exchange: the slower client's process
    (the two run at once); stop: the rest (the page's GET, the server's stop, the harness).
    """
    groups = {}
    for doc in sessions.values():
        for record in doc.get("cells") or []:
            clients = record.get("client_durations") or {}
            if "duration" not in record or "server_ready_after" not in record or not clients:
                continue
            cell = record["cell"]
            group = f"{cell['stack']} agent {'on' if cell['agent'] else 'off'}"
            start, exchange = record["server_ready_after"], max(clients.values())
            g = groups.setdefault(group, {"start": [], "exchange": [], "stop": []})
            g["start"].append(start)
            g["exchange"].append(exchange)
            g["stop"].append(max(record["duration"] - start - exchange, 0.0))
    out = []
    for group in sorted(groups, key=_group_order):
        g = groups[group]
        out.append({"group": group, "n": len(g["start"]),
                    **{k: bench_report.dist(v)["median"] for k, v in g.items()},
                    "p90": {k: bench_report.dist(v)["p90"] for k, v in g.items()}})
    return out


def _group_order(group):
    stack = group.split()[0]
    return ({"today": 0, "seed": 1}.get(stack, 2), group)
