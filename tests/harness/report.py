"""``python -m tests.harness.report``: merge session results into the observations.

collect() builds the report's data once (the grids, every cell's evidence, the
causes, the protocol checks and the optional inputs of tests/harness/inputs.py);
tests/harness/render/ turns it into the terminal grid, report/observations.md
(the GitHub job summary), report/observations.json and report/index.html.
Exits non-zero if any cell disagrees with its expectation or an expected
session has no results; the grids mark those cells.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from . import inputs, records
from .cells import (
    BOOLS,
    HISTORY_DATA,
    MAIN_STACKS,
    SEED_WITH_AGENT,
    SEED_WITHOUT_AGENT,
    SESSION_KIND,
    SESSION_LAYERS,
    STACKS,
    Cell,
    build_name,
    layer_cells,
    layer_pins,
    layer_session_name,
    parse_seed_list,
    seed_verdict,
    session_name,
    slug,
)
from .handlers import which_handler
from .history import cite
from .inputs import Data
from .records import (
    COMPARED,
    OUTCOME_COLUMNS,
    CellRecord,
    HistoryResults,
    ProtocolRecord,
    SchemaError,
    SessionResults,
    session_rerun,
)
from .render import html, markdown, terminal, versions

# The seed's own order of its 32 cells: (agent, (fixed, rum, hello_goodbyer, streaming)).
SEED_ORDER = [
    (agent, flags)
    for agent, text in ((True, SEED_WITH_AGENT), (False, SEED_WITHOUT_AGENT))
    for flags, _ in parse_seed_list(text)
]
# The stacks a plain `nox` runs: a missing session of these is a failure.  Any
# other stack (deploy) is shown when its sessions left results, as "not run" if not.
REQUIRED_STACKS = MAIN_STACKS
# What a stack's cells are compared with besides the model: the seed's published
# table, or (deploy) today's rows of the same arm.
REFERENCE = {"deploy": "today"}
Sessions = Mapping[str, SessionResults]  # session name -> its results


def load(results_dir: str | Path) -> tuple[dict[str, SessionResults], list[str]]:
    """{session name: SessionResults}; a file that does not parse is a failure, not a gap."""
    sessions: dict[str, SessionResults] = {}
    problems: list[str] = []
    expected: set[str] = set()
    results = Path(results_dir)
    for stack in REQUIRED_STACKS:
        for agent in (False, True):
            for fixed in (False, True):
                name = session_name(stack, agent, fixed)
                path = results / (slug(name) + ".json")
                expected.add(path.name)
                if not path.exists():
                    problems.append(
                        f"{name}: no results file ({path}); the session did not "
                        "run or crashed before pytest finished"
                    )
                    continue
                try:
                    sessions[name] = records.read(path, SessionResults, session_rerun(name))
                except SchemaError as exc:
                    problems.append(str(exc))
    # Sessions of the other stacks, whatever they are called.
    for path in sorted(results.glob("*.json")):
        if path.name in expected or path.name == inputs.CONFORMANCE:
            continue
        try:
            doc = records.read(path, SessionResults, session_rerun)
        except SchemaError as exc:
            problems.append(str(exc))
            continue
        # another stack's, a handler session's (today's stack on gevent-ws, ...) or a
        # layer session's
        if (
            doc.stack not in (None, *REQUIRED_STACKS)
            or doc.layer
            or doc.session.startswith("handler(")
        ):
            sessions[doc.session] = doc
    return sessions, problems


def conclusion_predicts(cell: Cell) -> str:
    """The seed's conclusion as a predicate: fails iff buggy package and a lazy layer."""
    lazy = cell.streaming or cell.hello_goodbyer or (cell.agent and cell.rum)
    return "-" if (not cell.fixed and lazy) else "+"


def cause(record: CellRecord, history: HistoryResults | None) -> str:
    """One sentence naming the upstream cause of a difference from the seed; a release
    is named only where ``history`` (tests/data/history/) proves it."""
    facts, versions, cell = record.facts, record.versions, record.cell
    gws, nr = versions.get("gevent-websocket"), versions.get("newrelic")
    if record.verdict == "+" and record.seed == "-":
        iterates = f"gevent-websocket {gws} iterates the application's result"
        parts = [
            (iterates if cell.fixed else cite(history, "handler_iterates", iterates))
            if facts["handler_iterates"]
            else f"gevent-websocket {gws}"
        ]
        if cell.agent and cell.rum and not facts["agent_rum_lazy_on_websockets"]:
            parts.append(
                cite(
                    history,
                    "agent_skips_websockets",
                    f"newrelic {nr} leaves "
                    "websocket upgrade requests alone (no lazy RUM middleware on "
                    "them)",
                )
            )
        return " and ".join(parts) + ", so the lazy layers run."
    if record.verdict == "-" and record.seed == "+":
        return (
            f"lazy layers {record.expected['lazy_layers']} are never run by "
            f"gevent-websocket {gws}, which does not iterate the application's result."
        )
    return ""


def evidence(record: CellRecord) -> Data:
    """What the drill-down shows: per client its transcript and its connection's events."""
    events = record.server_events or []
    t0 = min((e["t"] for e in events if "t" in e), default=0)

    def tidy(event: Data) -> Data:
        out = {k: v for k, v in event.items() if k not in ("pid", "t")}
        if "t" in event:
            out["at"] = round(event["t"] - t0, 3)
        return out

    transcripts = {t["client"]: t for t in record.transcripts or []}
    clients = []
    for obs in record.observed:
        transcript = transcripts.get(obs.client, {})
        clients.append(
            {
                "client": obs.client,
                "verdict": obs.verdict,
                "rid": obs.rid,
                "criteria": {k: getattr(obs, k) for k in COMPARED if k != "verdict"},
                "tcp_close_after": obs.tcp_close_after,
                "transcript": transcript.get("events") or [],
                "url": transcript.get("url"),
                "returncode": transcript.get("returncode"),
                "stderr": transcript.get("stderr") or "",
                "duration": transcript.get("duration"),
                "server_events": [
                    tidy(e) for e in events if obs.rid is not None and e.get("rid") == obs.rid
                ],
                "checks": obs.evidence or {},
            }
        )
    client_rids = {c["rid"] for c in clients}
    return {
        "clients": clients,
        # the server's own lines and the page's GET: everything not on a client's connection
        "server_events": [
            tidy(e) for e in events if e.get("rid") not in client_rids or e.get("rid") is None
        ],
        "controls": record.controls or {},
        "versions": record.versions or {},
        "facts": record.facts or {},
        "expected": record.expected,
        "page_status": record.page_status,
        "durations": {
            "cell": record.duration,
            "server_ready_after": _round(record.server_ready_after),
            "clients": record.client_durations or {},
        },
        "phases": asdict(record.phases),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def observed_row(
    row: Data, record: CellRecord, problems: list[str], history: HistoryResults | None
) -> None:
    cell = record.cell
    expected = record.expected
    tcp = expected.get("server_closed_tcp", True)  # None: the model leaves it open
    agree = all(
        o.verdict == expected["verdict"]
        and o.iterable_closed == expected["iterable_closed"]
        and o.layer_finished == expected.get("layer_finished")
        and (tcp is None or o.server_closed_tcp in (None, tcp))
        for o in record.observed
    )
    # a death the model allows (a race): what it cut short is no evidence either way
    died = record.died_as_allowed()
    if not agree and not died:
        problems.append(
            f"{cell.label()}: observed "
            f"{ {o.client: (o.verdict, o.layer_finished) for o in record.observed} }"
            f" (verdict, layer_finished) but the model expects "
            f"{(expected['verdict'], expected.get('layer_finished'))}"
        )
    failed = sorted(k for k, ok in (record.controls or {}).items() if not ok)
    if failed and not died:
        problems.append(
            f"{cell.label()}: positive controls failed: {failed}; the "
            "server is not what the cell claims"
        )
    row.update(
        status="observed",
        **asdict(record.outcome()),
        seed=record.seed,
        controls_failed=failed,
        expected=record.expected["verdict"],
        matches_model=agree,
        clients=sorted(o.client for o in record.observed),
        versions=record.versions,
        differs_from_seed=record.verdict != record.seed,
        cause=cause(record, history),
        conclusion=conclusion_predicts(cell),
        lazy_layers=list(record.expected.get("lazy_layers") or []),
        tracked_layer=record.layer,
        layer_cause=expected.get("layer_cause") or "",
        tcp_cause=expected.get("tcp_cause") or "",
        layer_defect=expected.get("layer_defect") or "",
        died_of=died,
        expected_layer_finished=expected.get("layer_finished"),
        duration=record.duration,
        evidence=evidence(record),
    )


def seed_cells(stack: str) -> list[Cell]:
    """The 32 cells of a stack, in the seed's own order."""
    return [
        Cell(stack, agent, fixed, rum, hello_goodbyer, streaming)
        for agent, (fixed, rum, hello_goodbyer, streaming) in SEED_ORDER
    ]


def cell_row(cell: Cell) -> Data:
    """A cell's coordinates as the renderers read them: its axes, id (slug) and label."""
    return {**cell.as_dict(), "id": cell.slug(), "label": cell.label()}


def stack_rows(
    stack: str,
    cells: Mapping[Cell, CellRecord],
    sessions: Sessions,
    problems: list[str],
    history: HistoryResults | None,
) -> list[Data]:
    rows = []
    for cell in seed_cells(stack):
        name = _session_of(stack, cell.agent, cell.fixed, sessions)
        row = {
            **cell_row(cell),
            "seed": seed_verdict(cell),
            "session": name,
            "cause": "",
            "cause_letter": None,
            "reference": None,
        }
        record = cells.get(cell)
        if record is not None:
            observed_row(row, record, problems, history)
        elif name and sessions[name].status == "skipped":
            row["status"] = "skipped"
            row["reason"] = sessions[name].reason
        elif stack in REQUIRED_STACKS:
            row["status"] = "missing"
            expected = session_name(stack, cell.agent, cell.fixed)
            if not any(expected in p for p in problems):  # its file's problem names it
                problems.append(f"{expected}: cell {cell.label()} has no observation")
        else:
            row["status"] = "not run"
        rows.append(row)
    return rows


def _session_of(stack: str, agent: bool, fixed: bool, sessions: Sessions) -> str | None:
    if stack in SESSION_KIND:
        name = session_name(stack, agent, fixed)
        return name if name in sessions else None
    return next(
        (
            n
            for n, d in sessions.items()
            if d.stack == stack and d.agent == agent and d.fixed == fixed
        ),
        None,
    )


def group_causes(stack: str, rows: list[Data]) -> list[Data]:
    """One entry per distinct cause sentence, lettered A, B, ...; each row names its letters."""
    causes: dict[str, list[str]] = {}  # sentence -> the ids of its rows
    for row in rows:
        if row.get("cause"):
            causes.setdefault(row["cause"], []).append(row["id"])
    out = []
    for letter, (text, ids) in zip(string.ascii_uppercase, causes.items(), strict=False):
        out.append({"id": f"{stack}-cause-{letter}", "letter": letter, "text": text, "cells": ids})
        for row in rows:
            if row["id"] in ids:
                row["cause_letter"] = letter
    return out


def compare_with(rows: list[Data], reference_rows: list[Data]) -> None:
    """Mark each observed row that differs from the same cell of another stack (deploy vs
    today) in any column of records.Outcome (tests/harness/deploy_compare.py): verdict,
    closed, valid_close_frame.  ``reference_differs`` lists those columns."""
    ref = {Cell.from_dict({**r, "stack": ""}): r for r in reference_rows}
    for row in rows:
        other = ref.get(Cell.from_dict({**row, "stack": ""}))
        row["reference"] = other.get("verdict") if other else None
        if row["status"] == "observed" and other and other["status"] == "observed":
            row["reference_differs"] = [c for c in OUTCOME_COLUMNS if row.get(c) != other.get(c)]
        else:
            row["reference_differs"] = []


def stacks_shown(sessions: Sessions) -> list[str]:
    seen = [d.stack for d in sessions.values() if d.stack]
    others = [s for s in dict.fromkeys([*STACKS, *seen]) if s not in REQUIRED_STACKS]
    return [*REQUIRED_STACKS, *others]


def build(
    sessions: Sessions,
    problems: list[str],
    history: HistoryResults | None = None,
) -> Data:
    cells: dict[Cell, CellRecord] = {}
    for doc in sessions.values():
        if doc.status == "skipped":
            continue
        for record in doc.cells:
            if not doc.layer:  # a layer session's cells have their own section
                cells[record.cell] = record
        if doc.status != "passed":
            problems.append(
                f"{doc.session}: pytest status {doc.status} "
                f"(exit {doc.pytest_exitstatus}); see its junit/log files"
            )
    stacks: dict[str, Data] = {}
    for stack in stacks_shown(sessions):
        rows = stack_rows(stack, cells, sessions, problems, history)
        observed_rows = [r for r in rows if r["status"] == "observed"]
        if stack not in REQUIRED_STACKS and not any(r["status"] != "not run" for r in rows):
            stacks[stack] = {"rows": [], "status": "not run", "required": False}
            continue
        conclusion: Data | None = None
        if observed_rows:
            wrong = [r for r in observed_rows if r["verdict"] != r["conclusion"]]
            conclusion = {
                "confirmed": not wrong and len(observed_rows) == len(rows),
                "cells": len(observed_rows),
                "contradicting": len(wrong),
            }
        stacks[stack] = {
            "rows": rows,
            "conclusion": conclusion,
            "status": "ran",
            "required": stack in REQUIRED_STACKS,
            "reference": REFERENCE.get(stack, "seed"),
            "reproduced": sum(1 for r in observed_rows if not r["differs_from_seed"]),
            "observed": len(observed_rows),
            "disagreeing": sum(1 for r in observed_rows if not r["matches_model"]),
            "missing": sum(1 for r in rows if r["status"] == "missing"),
            "versions": stack_versions(rows),
            "causes": group_causes(stack, rows),
        }
    for data in stacks.values():
        ref = data.get("reference")
        if ref and ref != "seed" and ref in stacks:
            compare_with(data["rows"], stacks[ref]["rows"])
            data["differs_from_reference"] = sum(1 for r in data["rows"] if r["reference_differs"])
    return {
        "stacks": stacks,
        "problems": problems,
        "sessions": {n: d.status for n, d in sessions.items()},
    }


def stack_versions(rows: list[Data]) -> str:
    """'Flask 3.1.3, gevent-websocket 0.10.1 / 0.10.1+fixed, ...' over a stack's cells."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for name, version in (row.get("versions") or {}).items():
            if version:
                seen.setdefault(name, set()).add(version)
    return ", ".join(f"{name} {' / '.join(sorted(v))}" for name, v in sorted(seen.items()))


# -- the layers: per stack, each layer's cells on each build -------------------

LAYER_LEGEND = (
    "F: the layer finished its request work before the server was done with the "
    "request; .: it never did; _: it was never started (the server's call never reached "
    "it); -: no layer (the control)"
)


def build_layers(
    sessions: Sessions, problems: list[str], history: HistoryResults | None = None
) -> Data:
    """Per stack: each layer's 8 cells per build, the model's beside them, and the layers
    that cannot run on that stack with the reason ([tool.layers.<name>].<stack>-reason)."""
    stacks: dict[str, Data] = {}
    for stack in MAIN_STACKS:
        layers: list[Data] = []
        cannot: list[Data] = []
        for name in SESSION_LAYERS:
            pins, reason = layer_pins(name, stack)
            if pins is None:
                cannot.append({"layer": name, "reason": reason})
                continue
            builds = []
            for fixed in BOOLS:
                session = layer_session_name(stack, name, fixed)
                doc = sessions.get(session)
                found = {r.cell: r for r in (doc.cells if doc else [])}
                rows = []
                for cell in layer_cells(stack, fixed, name):
                    row = {
                        **cell_row(cell),
                        "session": session,
                        "cause": "",
                        "cause_letter": None,
                        "reference": None,
                    }
                    if cell in found:
                        observed_row(row, found[cell], problems, history)
                        row["differs_from_seed"] = False  # no seed cell has a layer
                    else:
                        row["status"] = "skipped" if doc and doc.status == "skipped" else "not run"
                        row["reason"] = doc.reason if doc else None
                    rows.append(row)
                if doc and doc.status not in ("passed", "skipped"):
                    problems.append(
                        f"{session}: pytest status {doc.status} "
                        f"(exit {doc.pytest_exitstatus}); see its junit/log files"
                    )
                builds.append(
                    {
                        "build": build_name(fixed),
                        "fixed": fixed,
                        "session": session,
                        "status": doc.status if doc else "not run",
                        "rows": rows,
                    }
                )
            layers.append({"layer": name, "pins": pins, "builds": builds})
        stacks[stack] = {"layers": layers, "cannot_run": cannot}
    return {"stacks": stacks, "legend": LAYER_LEGEND}


# -- the protocol checks (tests/matrix/test_protocol.py): check x build ------------------

BUILDS = tuple(build_name(fixed) for fixed in (False, True))
# Worst first: the outcome shown when sessions of one build disagree.
OUTCOME_RANK = ("failed", "xpassed", "skipped", "xfailed", "passed")
PROTOCOL_LEGEND = (
    "defect = the expected failure on vanilla happened (the named defect was "
    "observed); pass = the check passed; XPASSED = a named defect was not seen; "
    "not run = no session of that build recorded the check"
)


def build_protocol(sessions: Sessions, problems: list[str]) -> Data:
    """Per stack, one row per protocol check with each build's outcome; appends problems."""
    # (stack, check) -> {build: [(session, record), ...]}
    found: dict[tuple[str, str], dict[str, list[tuple[str, ProtocolRecord]]]] = {}
    for name, doc in sessions.items():
        for record in doc.protocol:
            if record.build not in BUILDS:  # another handler's: the which-handler table
                continue
            stack = record.stack or doc.stack
            if stack is None:  # a null stack in the file: no table to put the check in
                problems.append(
                    f"{name}: protocol check {record.check} names no stack; "
                    f"rerun {session_rerun(name)}"
                )
                continue
            found.setdefault((stack, record.check), {}).setdefault(record.build, []).append(
                (name, record)
            )
    stacks: dict[str, list[Data]] = {}
    for (stack, check), builds in found.items():
        defect = next((r.defect for rs in builds.values() for _, r in rs if r.defect), None)
        row: Data = {"check": check, "defect": defect}
        for build in BUILDS:
            got = builds.get(build)
            if not got:
                row[build] = {"outcome": "not run", "evidence": "", "sessions": []}
                continue
            _, worst = min(
                got,
                key=lambda nr: (
                    OUTCOME_RANK.index(nr[1].outcome) if nr[1].outcome in OUTCOME_RANK else -1
                ),
            )
            row[build] = {
                "outcome": worst.outcome,
                "evidence": worst.evidence or "",
                "sessions": sorted({n for n, _ in got}),
            }
            if worst.outcome in ("failed", "xpassed") or worst.outcome not in OUTCOME_RANK:
                problems.append(
                    f"protocol check {check} ({stack} stack, {build}): "
                    f"{worst.outcome}"
                    + (f" (defect: {defect})" if worst.outcome == "xpassed" else "")
                    + f" — {worst.evidence or 'no evidence'}"
                )
        stacks.setdefault(stack, []).append(row)
    summary: dict[str, Data] = {}
    for stack, rows in stacks.items():
        summary[stack] = {
            "rows": rows,
            "checks": len(rows),
            "patched_passed": sum(r["patched"]["outcome"] == "passed" for r in rows),
            "vanilla_defects": sum(r["vanilla"]["outcome"] == "xfailed" for r in rows),
            "vanilla_passed": sum(r["vanilla"]["outcome"] == "passed" for r in rows),
        }
    return {"stacks": summary, "legend": PROTOCOL_LEGEND, "builds": list(BUILDS)}


def collect(
    results_dir: str | Path,
    report_dir: str | Path,
    history_dir: str | Path = HISTORY_DATA,
    plan: Path = versions.PLAN,
) -> Data:
    """The report's data, built once: every renderer reads only this.  ``history_dir``:
    what history proved (tests/data/history/, committed); ``plan``: the atlas's picks."""
    sessions, problems = load(results_dir)
    history = inputs.read_history(history_dir, problems)
    report = build(sessions, problems, history)
    report["protocol"] = build_protocol(sessions, report["problems"])
    report["layers"] = build_layers(sessions, report["problems"], history)
    report["timing"] = inputs.cell_timing(sessions)
    report.update(inputs.optional(results_dir, report_dir, report["problems"], history))
    report["handlers"] = which_handler(
        sessions, report["conformance"], report["bench"], results_dir, report_dir
    )
    report["versions"] = versions.section(results_dir, report_dir, report["problems"], plan)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.report")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default="report")
    parser.add_argument(
        "--history",
        default=HISTORY_DATA,
        type=Path,
        help="what history proved, a file per package (default: %(default)s)",
    )
    parser.add_argument(
        "--plan",
        default=versions.PLAN,
        type=Path,
        help="the atlas's picks, read beside report/atlas.json (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    report = collect(args.results, out, args.history, args.plan)
    out.mkdir(parents=True, exist_ok=True)
    (out / "observations.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out / "observations.md").write_text(markdown.render(report))
    (out / "index.html").write_text(html.render(report))
    terminal.render(report)
    print(f"\nwrote {out / 'observations.md'}, {out / 'observations.json'}, {out / 'index.html'}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
