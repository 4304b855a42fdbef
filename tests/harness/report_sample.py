"""Sample inputs of the report: results files as the sessions write them (cells predicted
by the real expectation model from each stack's versions, observed as predicted unless
a caller flips one), plus the optional inputs of other sessions (conformance, history,
bench, deploy) with keys the report does not know.

The report's unit tests (tests/unit/test_report.py) and its browser tests
(tests/product/test_report_page.py) render the same samples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.bench import report as bench_report
from tests.harness.cells import (
    BOOLS,
    DEFAULT_HANDLER,
    HANDLERS,
    Cell,
    cells,
    handler_session_name,
    seed_verdict,
    session_name,
    slug,
)
from tests.harness.model import StackFacts, predict
from tests.harness.records import SCHEMA

VERSIONS = {
    "today": ("0.10.1", "14.1.0"),
    "seed": ("0.9.5", "2.66.0.49"),
    "deploy": ("0.10.1", "14.1.0"),
}


def cell_record(cell: Cell, flip: bool = False) -> dict[str, Any]:
    gws, nr = VERSIONS[cell.stack]
    other = cell.handler != DEFAULT_HANDLER  # gevent-websocket is absent beside another
    versions = {
        "gevent-websocket": None if other else gws + ("+fixed" if cell.fixed else ""),
        "newrelic": nr if cell.agent else None,
        "Flask": "3.1.3",
        "python": "3.11.7",
    }
    facts = StackFacts.from_versions(versions, cell.handler)
    expected = predict(cell, facts).as_dict()
    verdict = {"+": "-", "-": "+"}[expected["verdict"]] if flip else expected["verdict"]
    observed: list[dict[str, Any]] = []
    transcripts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = [{"event": "listening", "t": 100.0, "pid": 7}]
    for rid, client in enumerate(("python", "node"), start=2):
        observed.append(
            {
                "client": client,
                "rid": rid,
                "view": verdict == "+",
                "iterator": expected["iterator"],
                "middleware": expected["middleware"],
                "verdict": verdict,
                "iterable_closed": expected["iterable_closed"],
                "valid_close_frame": True,
                "evidence": {"view": {}},
                "layer_finished": expected["layer_finished"],
                "server_closed_tcp": expected["server_closed_tcp"],
            }
        )
        transcripts.append(
            {
                "client": client,
                "url": f"ws://127.0.0.1:1/view?client={client}",
                "duration": 0.2,
                "returncode": 0,
                "stderr": "",
                "events": [
                    {"event": "open", "url": "ws://127.0.0.1:1/view"},
                    {"event": "received", "data": "Hello from view!"},
                    {"event": "sent", "data": f"Hi from the {client} client"},
                    {"event": "closed", "by": "server", "code": 1000, "reason": "", "valid": True},
                ],
            }
        )
        events += [
            {"event": "request", "rid": rid, "query": f"client={client}", "t": 100.1},
            {
                "event": "view_received",
                "rid": rid,
                "data": f"Hi from the {client}",
                "t": 100.2,
                "new_key": "kept",
            },
        ]
    return {
        "cell": cell.as_dict(),
        "seed": seed_verdict(cell),
        "verdict": verdict,
        "observed": observed,
        "expected": expected,
        "facts": facts.__dict__,
        "controls": {"agent loaded": True},
        "versions": versions,
        "page_status": 200,
        "transcripts": transcripts,
        "server_events": events,
        "server_ready_after": 0.3,
        "client_durations": {"python": 0.2, "node": 0.25},
        "duration": 0.7,
        "launcher": "app",
        "phases": {"start": 0.3, "exchange": 0.25, "stop": 0.15},
        "a_key_from_the_future": [1, 2],
    }


def write_results(
    results: Path,
    stacks: Sequence[str] = ("today", "seed"),
    flip: Cell | None = None,
    drop: str | None = None,
) -> None:
    """Results files of every session of `stacks`; `flip` a cell (observed != model)."""
    results.mkdir(parents=True, exist_ok=True)
    for stack in stacks:
        for agent in (False, True):
            for fixed in (False, True):
                name = (
                    session_name(stack, agent, fixed)
                    if stack != "deploy"
                    else f"deploy(agent={agent}, fixed={fixed})"
                )
                if name == drop:
                    continue
                records = [cell_record(c, flip=c == flip) for c in cells(stack, agent, fixed)]
                (results / f"{slug(name)}.json").write_text(
                    json.dumps(
                        {
                            "schema": SCHEMA,
                            "session": name,
                            "stack": stack,
                            "agent": agent,
                            "fixed": fixed,
                            "status": "failed" if flip in cells(stack, agent, fixed) else "passed",
                            "pytest_exitstatus": 0,
                            "cells": records,
                            "protocol": [
                                {
                                    "check": "handshake[x]",
                                    "nodeid": "t::handshake[x]",
                                    "stack": stack,
                                    "build": "patched" if fixed else "vanilla",
                                    "outcome": "passed",
                                    "defect": None,
                                    "evidence": "ok | fine",
                                    "duration": 0.1,
                                }
                            ],
                        }
                    )
                )


def write_handler_results(results: Path) -> None:
    """The handler(name, agent) sessions' results: the model's cells, one protocol check
    passed and one a named defect (agent off only, as the session runs them)."""
    for handler in HANDLERS:
        for agent in BOOLS:
            name = handler_session_name(handler, agent)
            records = [
                cell_record(replace(c, handler=handler)) for c in cells("today", agent, False)
            ]
            protocol = (
                []
                if agent
                else [
                    {
                        "check": "handshake[x]",
                        "nodeid": "t::handshake[x]",
                        "stack": "today",
                        "build": handler,
                        "outcome": "passed",
                        "defect": None,
                        "evidence": "ok",
                        "duration": 0.1,
                    },
                    {
                        "check": "close[x]",
                        "nodeid": "t::close[x]",
                        "stack": "today",
                        "build": handler,
                        "outcome": "xfailed",
                        "defect": f"{handler} keeps TCP",
                        "evidence": "no close | seen",
                        "duration": 0.1,
                    },
                ]
            )
            (results / f"{slug(name)}.json").write_text(
                json.dumps(
                    {
                        "schema": SCHEMA,
                        "session": name,
                        "stack": "today",
                        "agent": agent,
                        "fixed": False,
                        "status": "passed",
                        "pytest_exitstatus": 0,
                        "cells": records,
                        "protocol": protocol,
                    }
                )
            )


FLIPPED = Cell("seed", True, False, True, False, False)  # the history sample's flip
HISTORY_SAMPLE = "history-data"  # beside results/ and report/: write_optional's history


def write_optional(results: Path, out: Path) -> None:
    """The other sessions' inputs: Autobahn's results, a history, the bench's figures."""
    out.mkdir(parents=True, exist_ok=True)
    (results / "conformance.json").write_text(
        json.dumps(
            {
                "schema": SCHEMA,
                "duration": 61.5,
                "extra": 1,
                "wstest": "0.10.9",
                "targets": {
                    "today-patched": {
                        "stack": "today",
                        "fixed": True,
                        "gevent_websocket": "0.10.1+fixed",
                        "duration": 30,
                        "counts": {
                            "behavior": {
                                "OK": 500,
                                "NON-STRICT": 3,
                                "INFORMATIONAL": 4,
                                "UNIMPLEMENTED": 0,
                                "FAILED": 0,
                            },
                            "behaviorClose": {"OK": 507},
                        },
                        "non_ok": [
                            {
                                "case": "6.4.1",
                                "behavior": "NON-STRICT",
                                "behaviorClose": "OK",
                                "description": "fragments | split",
                                "defect": None,
                                "more": True,
                            },
                            {
                                "case": "12.1.1",
                                "behavior": "UNIMPLEMENTED",
                                "behaviorClose": "UNIMPLEMENTED",
                                "description": "deflate",
                            },
                        ],
                        "report_dir": "report/conformance/today-patched",
                    },
                    "today-vanilla": {
                        "stack": "today",
                        "fixed": False,
                        "gevent_websocket": "0.10.1",
                        "duration": 30,
                        "counts": {"behavior": {"OK": 400, "FAILED": 107}},
                        "non_ok": [
                            {
                                "case": "7.3.4",
                                "behavior": "FAILED",
                                "behaviorClose": "FAILED",
                                "description": "close",
                                "defect": "close drops the code",
                            }
                        ],
                        "report_dir": "report/conformance/today-vanilla",
                    },
                    **{
                        f"today-{handler}": {
                            "stack": "today",
                            "fixed": False,
                            "gevent_websocket": "",
                            "duration": 20,
                            "handler": handler,
                            "handler_version": HANDLERS[handler]["version"],
                            "counts": {
                                "behavior": {"OK": 250, "FAILED": 3, "UNIMPLEMENTED": 216},
                                "behaviorClose": {"OK": 469},
                            },
                            "non_ok": [
                                {
                                    "case": "1.1.1",
                                    "behavior": "FAILED",
                                    "behaviorClose": "OK",
                                    "description": "empty",
                                    "defect": f"{handler} sends nothing",
                                },
                                {
                                    "case": "3.1",
                                    "behavior": "FAILED",
                                    "behaviorClose": "FAILED",
                                    "description": "rsv",
                                    "defect": None,
                                },
                            ],
                            "excluded": {
                                "9.1.1": "timed, not judged",
                                "9.2.1": "timed, not judged",
                                "6.4.1": "hangs wstest",
                            },
                            "report_dir": f"report/conformance/today-{handler}",
                        }
                        for handler in HANDLERS
                    },
                },
            }
        )
    )
    other = Cell("seed", False, False, False, False, True)

    def package(
        name: str,
        before: str,
        after: str,
        cell: Cell,
        probed: list[str],
        skipped: list[str],
        thresholds: dict[str, str],
    ) -> dict[str, Any]:
        return {
            "package": name,
            "stack": "seed",
            "python": "2.7.18",
            "agent": [False, True],
            "range": {
                "first": probed[0],
                "last": probed[-1],
                "low": probed[0],
                "high": probed[-1],
                "releases": probed,
            },
            "watched": [cell.label()],
            "spread": 3,
            "probed": [
                {
                    "release": r,
                    "purposes": ["end"],
                    "verdicts": {cell.label(): "-" if r == before else "+", other.label(): "+"},
                }
                for r in probed
            ],
            "skipped": [{"release": r, "reason": "no 2.7 wheel"} for r in skipped],
            "flips": [
                {
                    "before": before,
                    "after": after,
                    "skipped_between": [],
                    "changed": {cell.label(): ["-", "+"]},
                    "proof": {before: {cell.label(): "-"}, after: {cell.label(): "+"}},
                    "diff": "--- a\n+++ b\n@@\n-<script>\n+x",
                    "why": "new key",
                }
            ],
            "thresholds": thresholds,
            "problems": [],
            "status": "passed",
            "notes": [],
            "runs": [],
            "wall_time": 300,
            "load_before": [0.1, 0.2, 0.3],
        }

    history = out.parent / HISTORY_SAMPLE
    history.mkdir(parents=True, exist_ok=True)
    for name, doc in {
        "newrelic": package(
            "newrelic",
            "2.66.0.49",
            "2.68.0.50",
            FLIPPED,
            ["2.66.0.49", "2.68.0.50", "2.70.0.1"],
            ["2.70.0.1"],
            {"agent_skips_websockets": "2.68.0.50"},
        ),
        "gevent-websocket": package(
            "gevent-websocket",
            "0.9.5",
            "0.10",
            other,
            ["0.9.5", "0.10", "0.10.1"],
            [],
            {"handler_iterates": "0.10.0"},
        ),
    }.items():
        (history / f"{name}.json").write_text(json.dumps({"schema": SCHEMA, **doc}))
    for name in ("today-patched", "today-vanilla", *(f"today-{h}" for h in HANDLERS)):
        # Autobahn's own report, which the conformance table and the handler table link
        (out / "conformance" / name).mkdir(parents=True, exist_ok=True)
        (out / "conformance" / name / "index.html").write_text("<p>Autobahn's report</p>")
    (out / "bench.json").write_text(
        json.dumps(
            {
                "schema": SCHEMA,
                "started": "2026-11-25T12:00:00+00:00",
                "machine": {"cpus": 2, "python": "3.11.7"},
                "load": {"before": [0.1, 0.2, 0.3]},
                "cells": {
                    "today agent off": {
                        "duration": {"n": 16, "median": 0.8, "p90": 1, "max": 1},
                        "start": {"median": 0.3, "p90": 0.4, "max": 0.5},
                        "exchange": {"median": 0.3, "p90": 0.4, "max": 0.5},
                        "stop": {"median": 0.2, "p90": 0.3, "max": 0.4},
                    },
                    "all": {"duration": {"n": 16, "median": 0.8, "p90": 1, "max": 1}},
                },
                "figures": [["cell median, all", "0.800 s", "<= 0.4 s", "miss", "+100% vs target"]],
                "throughput": {
                    "rates": {
                        "flask vanilla agent-off": {
                            "median": 5000,
                            "min": 4000,
                            "max": 6000,
                            "n": 7,
                        }
                    },
                    "ratios": {
                        "patched/vanilla, agent off": {
                            "median": 0.99,
                            "min": 0.9,
                            "max": 1.05,
                            "n": 7,
                            "target": 0.97,
                            "pass": True,
                        },
                        "agent on/off, vanilla": {
                            "median": 0.8,
                            "min": 0.7,
                            "max": 0.85,
                            "n": 7,
                            "target": None,
                        },
                    },
                },
                "handlers": {
                    "reference": "patched",
                    "rounds": 5,
                    "cell_rounds": 2,
                    "echo": [
                        {
                            "handler": name,
                            "route": route,
                            "clients": n,
                            "rates": [1000],
                            "rate_median": 1000,
                            "ratio_vs_patched": [ratio],
                            "ratio_median": ratio,
                        }
                        for name, ratio in (
                            ("vanilla", 1.02),
                            ("patched", 1.0),
                            ("gevent-ws", 0.4),
                            ("flask-sock", 0.5),
                        )
                        for route in ("/raw/echo", "/echo")
                        for n in (1, 10)
                    ],
                    "phases": {
                        name: {
                            "start": 0.3,
                            "exchange": 0.3,
                            "stop": 0.1,
                            "n": 16,
                            "ratio": {"start": 1.0, "exchange": 1.0, "stop": 1.0},
                        }
                        for name in ("vanilla", "patched", "gevent-ws", "flask-sock")
                    },
                },
            }
        )
    )
    (out / "bench.md").write_text(bench_report.render(json.loads((out / "bench.json").read_text())))
