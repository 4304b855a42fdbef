"""The which-handler table: gevent-websocket vanilla and patched beside the
handlers a user can migrate to, each figure with the file or page that shows it.

A row's figures come from what the runs recorded: the cells and protocol checks of its
sessions (the matrix sessions for gevent-websocket's two builds, ``handler(name=...)``
for the others), its Autobahn target (results/conformance.json), the bench's echo
ratios (report/bench.json, when `nox -s bench` ran), and pyproject.toml's facts
(Python 2.7 support, latest release).  Nothing here runs anything.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cells import (
    BOOLS,
    DEFAULT_HANDLER,
    HANDLERS,
    STACKS,
    TOOL,
    build_name,
    build_version,
    handler_layer_name,
    handler_layers,
    handler_session_name,
    layer_session_name,
    session_name,
    slug,
)
from .conformance import COMPRESSION
from .records import CellRecord, SessionResults

Data = dict[str, Any]
REFERENCE = TOOL.get("handler-reference", {}).get(DEFAULT_HANDLER, {})
# a row without layer runs (its handler session ran without the agent only in part)
LAYERS_ABSENT = "no layer run on this handler"
NOT_RUN = "not run"


def rows_of() -> list[tuple[str, bool, str]]:
    """(handler, fixed, Autobahn target) per row: the reference rows first."""
    return [
        *((DEFAULT_HANDLER, fixed, f"today-{build_name(fixed)}") for fixed in BOOLS),
        *((name, False, f"today-{name}") for name in HANDLERS),
    ]


def _label(handler: str, fixed: bool) -> str:
    if handler == DEFAULT_HANDLER:
        release = STACKS["today"]["gevent-websocket"]["version"]
        return f"gevent-websocket {build_version(release, fixed)} ({build_name(fixed)})"
    pins = HANDLERS[handler]
    brings = [p for p in pins.get("requires", []) if p["name"] == "simple-websocket"]
    return " + ".join(
        [f"{handler} {pins['version']}", *(f"{p['name']} {p['version']}" for p in brings)]
    )


def _sessions(handler: str, fixed: bool) -> list[str]:
    if handler == DEFAULT_HANDLER:
        return [session_name("today", agent, fixed) for agent in BOOLS]
    return [handler_session_name(handler, agent) for agent in BOOLS]


def _layer_sessions(handler: str, fixed: bool) -> list[str]:
    """Today's layer runs of a row: the layer sessions of gevent-websocket's build, the
    handler session's layer runs of another handler."""
    if handler != DEFAULT_HANDLER:
        return [handler_layer_name(handler, name) for name in handler_layers()]
    return [layer_session_name("today", name, fixed) for name in handler_layers()]


def _link(path: Path, report_dir: Path) -> str:
    """``path`` as the page (in ``report_dir``) links it."""
    return os.path.relpath(path, report_dir)


def _cells(docs: list[SessionResults], handler: str) -> Data:
    records = [r for doc in docs for r in doc.cells if r.cell.handler == handler]
    passed = sum(all(o.verdict == "+" for o in r.observed) for r in records)
    closed = sum(all(o.iterable_closed for o in r.observed) for r in records)
    agree = sum(
        all(
            o.verdict == r.expected["verdict"]
            and o.iterable_closed == r.expected["iterable_closed"]
            for o in r.observed
        )
        for r in records
    )
    return {
        "cells": len(records),
        "passed": passed,
        "closed": closed,
        "matches_model": agree == len(records),
        "layers": _layers(records),
    }


def _layers(records: list[CellRecord]) -> Data | None:
    """Cells whose tracked layer had request work (layer_finished not None): how many
    finished it for every client.  The agent's arms have none on today's stack (newrelic
    starts no transaction for a websocket): the layer sessions' cells are the figure."""
    tracked = [r.outcome().layer_finished for r in records]
    found = [f for f in tracked if f is not None]
    return {"finished": sum(f is True for f in found), "of": len(found)} if found else None


def _protocol(docs: list[SessionResults]) -> Data | None:
    checks = [p for doc in docs for p in doc.protocol]
    if not checks:
        return None
    return {
        "passed": sum(p.outcome == "passed" for p in checks),
        "checks": len(checks),
        "defects": sorted({p.defect for p in checks if p.outcome == "xfailed" and p.defect}),
    }


def _autobahn(conformance: Data | None, target: str) -> Data | None:
    found = next((t for t in (conformance or {}).get("targets", []) if t["target"] == target), None)
    if found is None:
        return None
    outside = [c for c in found["non_ok"] if c["case"].split(".", 1)[0] not in COMPRESSION]
    return {
        "target": target,
        "non_ok": len(outside),
        "cases": found["cases"],
        "excluded": found.get("excluded") or {},
        "link": found.get("link"),
        "unnamed": [c["case"] for c in outside if not c.get("defect")],
    }


def _throughput(bench: Data | None, handler: str, fixed: bool) -> Data | None:
    """The bench's echo ratios of this handler against patched gevent-websocket."""
    if handler == DEFAULT_HANDLER and fixed:
        return {"ratio": 1.0, "reference": True, "rows": []}
    rows = [
        r
        for r in ((bench or {}).get("handlers") or {}).get("echo", [])
        if r.get("handler") == (handler if handler != DEFAULT_HANDLER else build_name(fixed))
    ]
    if not rows:
        return None
    ratios = sorted(r["ratio_median"] for r in rows)
    return {
        "ratio": round(statistics.median(ratios), 3),
        "min": ratios[0],
        "max": ratios[-1],
        "reference": False,
        "rows": rows,
    }


def which_handler(
    sessions: Mapping[str, SessionResults],
    conformance: Data | None,
    bench: Data | None,
    results_dir: str | Path,
    report_dir: str | Path,
) -> Data:
    """The table's rows, each figure beside its evidence link."""
    results, report = Path(results_dir), Path(report_dir)
    rows = []
    for handler, fixed, target in rows_of():
        names = _sessions(handler, fixed)
        docs = [sessions[n] for n in names if n in sessions and sessions[n].status != "skipped"]
        layer_docs = [sessions[n] for n in _layer_sessions(handler, fixed) if n in sessions]
        facts = HANDLERS.get(handler, REFERENCE)
        files = [
            {"session": n, "link": _link(results / f"{slug(n)}.json", report)}
            for n in names
            if n in sessions
        ]
        rows.append(
            {
                "handler": handler,
                "fixed": fixed,
                "label": _label(handler, fixed),
                "id": f"handler-{slug(target)}",
                "sessions": files,
                "status": "observed" if docs else NOT_RUN,
                **_cells(docs, handler),
                **(
                    {
                        "layers": _layers([r for d in layer_docs for r in d.cells]),
                        "layers_link": _link(
                            results / f"{slug(layer_docs[0].session)}.json", report
                        ),
                    }
                    if layer_docs
                    else {}
                ),
                "protocol": _protocol([d for d in docs if d.agent is False]),
                "autobahn": _autobahn(conformance, target),
                "throughput": _throughput(bench, handler, fixed),
                "python27": facts.get("python27"),
                "python27_evidence": facts.get("python27-evidence"),
                "latest": facts.get("latest"),
                "released": facts.get("released"),
            }
        )
    return {
        "rows": rows,
        "layers_absent": LAYERS_ABSENT,
        "bench_link": "bench.md" if bench else None,
    }
