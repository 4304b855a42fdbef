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
from pathlib import Path

from . import inputs
from .cells import (
    MAIN_STACKS,
    SEED_WITH_AGENT,
    SEED_WITHOUT_AGENT,
    SESSION_KIND,
    STACKS,
    parse_seed_list,
    seed_table,
    session_name,
    slug,
)
from .deploy_compare import COLUMNS as COMPARED

SEED_ORDER = [(agent, flags) for agent, text in ((True, SEED_WITH_AGENT),
                                                 (False, SEED_WITHOUT_AGENT))
              for flags, _ in parse_seed_list(text)]
# The stacks a plain `nox` runs: a missing session of these is a failure.  Any
# other stack (deploy) is shown when its sessions left results, as "not run" if not.
REQUIRED_STACKS = MAIN_STACKS
# What a stack's cells are compared with besides the model: the seed's published
# table, or (deploy) today's rows of the same arm.
REFERENCE = {"deploy": "today"}
# deploy_compare's columns, as a report row names them.
ROW_COLUMN = dict(zip(COMPARED, ("verdict", "closed", "valid_close"), strict=True))


def load(results_dir):
    """{session name: document}; a file that does not parse is a failure, not a gap."""
    sessions, problems, expected = {}, [], set()
    results = Path(results_dir)
    for stack in REQUIRED_STACKS:
        for agent in (False, True):
            for fixed in (False, True):
                name = session_name(stack, agent, fixed)
                path = results / (slug(name) + ".json")
                expected.add(path.name)
                if not path.exists():
                    problems.append(f"{name}: no results file ({path}); the session did not "
                                    "run or crashed before pytest finished")
                    continue
                try:
                    sessions[name] = json.loads(path.read_text())
                except ValueError as exc:
                    problems.append(f"{name}: unreadable results file {path}: {exc}")
    # Sessions of the other stacks, whatever they are called.
    for path in sorted(results.glob("*.json")):
        if path.name in expected or path.name == inputs.CONFORMANCE:
            continue
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            problems.append(f"{path}: unreadable results file: {exc}; rerun its session")
            continue
        if isinstance(doc, dict) and doc.get("session") and doc.get("stack") not in (
                None, *REQUIRED_STACKS):
            sessions[doc["session"]] = doc
    return sessions, problems


def conclusion_predicts(cell):
    """The seed's conclusion as a predicate: fails iff buggy package and a lazy layer."""
    lazy = cell["streaming"] or cell["hello_goodbyer"] or (cell["agent"] and cell["rum"])
    return "-" if (not cell["fixed"] and lazy) else "+"


def cause(record):
    """One sentence naming the upstream cause of a difference from the seed."""
    facts, versions, cell = record["facts"], record["versions"], record["cell"]
    gws, nr = versions.get("gevent-websocket"), versions.get("newrelic")
    from .history import cite  # a release is named only where `nox -s history(..)` proved it

    if record["verdict"] == "+" and record["seed"] == "-":
        iterates = f"gevent-websocket {gws} iterates the application's result"
        parts = [(iterates if cell["fixed"] else cite("handler_iterates", iterates))
                 if facts["handler_iterates"] else f"gevent-websocket {gws}"]
        if cell["agent"] and cell["rum"] and not facts["agent_rum_lazy_on_websockets"]:
            parts.append(cite("agent_skips_websockets", f"newrelic {nr} leaves websocket "
                              "upgrade requests alone (no lazy RUM middleware on them)"))
        return " and ".join(parts) + ", so the lazy layers run."
    if record["verdict"] == "-" and record["seed"] == "+":
        return (f"lazy layers {record['expected']['lazy_layers']} are never run by "
                f"gevent-websocket {gws}, which does not iterate the application's result.")
    return ""



def cell_id(stack, agent, fixed, rum, hello_goodbyer, streaming):
    """A cell's id in the page (an HTML id and #fragment): today-a1-f0-r1-h0-s1."""
    bits = zip("afrhs", (agent, fixed, rum, hello_goodbyer, streaming), strict=True)
    return stack + "".join(f"-{k}{int(v)}" for k, v in bits)


def evidence(record):
    """What the drill-down shows: per client its transcript and its connection's events."""
    events = record.get("server_events") or []
    t0 = min((e["t"] for e in events if "t" in e), default=0)

    def tidy(event):
        out = {k: v for k, v in event.items() if k not in ("pid", "t")}
        if "t" in event:
            out["at"] = round(event["t"] - t0, 3)
        return out

    transcripts = {t["client"]: t for t in record.get("transcripts") or []}
    clients = []
    for obs in record["observed"]:
        transcript = transcripts.get(obs["client"], {})
        clients.append({
            "client": obs["client"], "verdict": obs["verdict"], "rid": obs.get("rid"),
            "criteria": {k: obs.get(k) for k in ("view", "iterator", "middleware",
                                                 "iterable_closed", "valid_close_frame")},
            "transcript": transcript.get("events") or [],
            "url": transcript.get("url"), "returncode": transcript.get("returncode"),
            "stderr": transcript.get("stderr") or "", "duration": transcript.get("duration"),
            "server_events": [tidy(e) for e in events
                              if obs.get("rid") is not None and e.get("rid") == obs["rid"]],
            "checks": obs.get("evidence") or {},
        })
    client_rids = {c["rid"] for c in clients}
    return {
        "clients": clients,
        # the server's own lines and the page's GET: everything not on a client's connection
        "server_events": [tidy(e) for e in events if e.get("rid") not in client_rids
                          or e.get("rid") is None],
        "controls": record.get("controls") or {}, "versions": record.get("versions") or {},
        "facts": record.get("facts") or {}, "expected": record["expected"],
        "page_status": record.get("page_status"),
        "durations": {"cell": record.get("duration"),
                      "server_ready_after": _round(record.get("server_ready_after")),
                      "clients": record.get("client_durations") or {}},
    }


def _round(value):
    return None if value is None else round(value, 3)


def observed_row(stack, row, record, problems):
    observed = {o["client"]: o for o in record["observed"]}
    agree = all(o["verdict"] == record["expected"]["verdict"]
                and o["iterable_closed"] == record["expected"]["iterable_closed"]
                for o in observed.values())
    if not agree:
        problems.append(f"{stack} {flags_text(row)}: observed "
                        f"{ {k: o['verdict'] for k, o in observed.items()} } but the "
                        f"model expects {record['expected']['verdict']}")
    failed = sorted(k for k, ok in (record.get("controls") or {}).items() if not ok)
    if failed:
        problems.append(f"{stack} {flags_text(row)}: positive controls failed: {failed}; the "
                        "server is not what the cell claims")
    row.update(status="observed", verdict=record["verdict"], seed=record["seed"],
               controls_failed=failed,
               expected=record["expected"]["verdict"], matches_model=agree,
               closed=all(o["iterable_closed"] for o in observed.values()),
               valid_close=all(o["valid_close_frame"] for o in observed.values()),
               clients=sorted(observed), versions=record["versions"],
               differs_from_seed=record["verdict"] != record["seed"],
               cause=cause(record), conclusion=conclusion_predicts(record["cell"]),
               lazy_layers=list(record["expected"].get("lazy_layers") or []),
               duration=record.get("duration"), evidence=evidence(record))


def flags_text(row):
    return ", ".join(f"{k}={'on' if row[k] else 'off'}"
                     for k in ("agent", "fixed", "rum", "hello_goodbyer", "streaming"))


def stack_rows(stack, cells, sessions, problems):
    seed = seed_table()
    rows = []
    for agent, flags in SEED_ORDER:
        key = (stack, agent, *flags)
        name = _session_of(stack, agent, flags[0], sessions)
        row = {"id": cell_id(*key), "agent": agent, "fixed": flags[0], "rum": flags[1],
               "hello_goodbyer": flags[2], "streaming": flags[3], "seed": seed[key[1:]],
               "session": name, "cause": "", "cause_letter": None, "reference": None}
        record = cells.get(key)
        if record is not None:
            observed_row(stack, row, record, problems)
        elif name and sessions[name].get("status") == "skipped":
            row["status"] = "skipped"
            row["reason"] = sessions[name].get("reason")
        elif stack in REQUIRED_STACKS:
            row["status"] = "missing"
            expected = session_name(stack, agent, flags[0])
            if not any(p.startswith(expected) for p in problems):
                problems.append(f"{expected}: cell {flags_text(row)} has no observation")
        else:
            row["status"] = "not run"
        rows.append(row)
    return rows


def _session_of(stack, agent, fixed, sessions):
    if stack in SESSION_KIND:
        name = session_name(stack, agent, fixed)
        return name if name in sessions else None
    return next((n for n, d in sessions.items() if d.get("stack") == stack
                 and d.get("agent") == agent and d.get("fixed") == fixed), None)


def group_causes(stack, rows):
    """One entry per distinct cause sentence, lettered A, B, ...; each row names its letters."""
    causes = {}
    for row in rows:
        if row.get("cause"):
            causes.setdefault(row["cause"], []).append(row["id"])
    out = []
    for letter, (text, ids) in zip(string.ascii_uppercase, causes.items(), strict=False):
        out.append({"id": f"{stack}-cause-{letter}", "letter": letter, "text": text,
                    "cells": ids})
        for row in rows:
            if row["id"] in ids:
                row["cause_letter"] = letter
    return out


def compare_with(rows, reference_rows):
    """Mark each observed row that differs from the same cell of another stack (deploy vs
    today) in any column tests/harness/deploy_compare.py compares: verdict, closed, close
    frame.  ``reference_differs`` lists those columns."""
    ref = {(r["agent"], r["fixed"], r["rum"], r["hello_goodbyer"], r["streaming"]): r
           for r in reference_rows}
    for row in rows:
        other = ref.get((row["agent"], row["fixed"], row["rum"], row["hello_goodbyer"],
                         row["streaming"]))
        row["reference"] = other.get("verdict") if other else None
        both = row["status"] == "observed" and other and other["status"] == "observed"
        row["reference_differs"] = [c for c, key in ROW_COLUMN.items()
                                    if row[key] != other[key]] if both else []


def stacks_shown(sessions):
    seen = [d.get("stack") for d in sessions.values() if d.get("stack")]
    others = [s for s in dict.fromkeys([*STACKS, *seen]) if s not in REQUIRED_STACKS]
    return [*REQUIRED_STACKS, *others]


def build(sessions, problems):
    cells = {}
    for doc in sessions.values():
        if doc.get("status") == "skipped":
            continue
        for record in doc.get("cells", []):
            c = record["cell"]
            cells[(c["stack"], c["agent"], c["fixed"], c["rum"], c["hello_goodbyer"],
                   c["streaming"])] = record
        if doc.get("status") != "passed":
            problems.append(f"{doc['session']}: pytest status {doc.get('status')} "
                            f"(exit {doc.get('pytest_exitstatus')}); see its junit/log files")
    stacks = {}
    for stack in stacks_shown(sessions):
        rows = stack_rows(stack, cells, sessions, problems)
        observed_rows = [r for r in rows if r["status"] == "observed"]
        if stack not in REQUIRED_STACKS and not any(r["status"] != "not run" for r in rows):
            stacks[stack] = {"rows": [], "status": "not run", "required": False}
            continue
        conclusion = None
        if observed_rows:
            wrong = [r for r in observed_rows if r["verdict"] != r["conclusion"]]
            conclusion = {"confirmed": not wrong and len(observed_rows) == len(rows),
                          "cells": len(observed_rows), "contradicting": len(wrong)}
        stacks[stack] = {"rows": rows, "conclusion": conclusion, "status": "ran",
                         "required": stack in REQUIRED_STACKS,
                         "reference": REFERENCE.get(stack, "seed"),
                         "reproduced": sum(1 for r in observed_rows if not r["differs_from_seed"]),
                         "observed": len(observed_rows),
                         "disagreeing": sum(1 for r in observed_rows if not r["matches_model"]),
                         "missing": sum(1 for r in rows if r["status"] == "missing"),
                         "versions": stack_versions(rows),
                         "causes": group_causes(stack, rows)}
    for data in stacks.values():
        ref = data.get("reference")
        if ref and ref != "seed" and ref in stacks:
            compare_with(data["rows"], stacks[ref]["rows"])
            data["differs_from_reference"] = sum(1 for r in data["rows"]
                                                 if r["reference_differs"])
    return {"stacks": stacks, "problems": problems,
            "sessions": {n: d.get("status") for n, d in sessions.items()}}


def stack_versions(rows):
    """'Flask 3.1.3, gevent-websocket 0.10.1 / 0.10.1+fixed, ...' over a stack's cells."""
    seen = {}
    for row in rows:
        for name, version in (row.get("versions") or {}).items():
            if version:
                seen.setdefault(name, set()).add(version)
    return ", ".join(f"{name} {' / '.join(sorted(v))}" for name, v in sorted(seen.items()))


def conclusion_text(c):
    if c is None:
        return "not evaluated (no cells)"
    if c["confirmed"]:
        return f"confirmed on all {c['cells']} cells"
    return f"refuted by {c['contradicting']} of {c['cells']} cells"


# -- the protocol checks (tests/matrix/test_protocol.py): check x (vanilla, patched) --------

PROTOCOL_ARMS = ("vanilla", "patched")
# Worst first: the outcome shown when sessions of one arm disagree.
OUTCOME_RANK = ("failed", "xpassed", "skipped", "xfailed", "passed")
OUTCOME_TEXT = {"xfailed": "defect", "passed": "pass", "failed": "FAILED", "xpassed": "XPASSED",
                "skipped": "skipped", "not run": "not run"}
PROTOCOL_LEGEND = ("defect = the expected failure on vanilla happened (the named defect was "
                   "observed); pass = the check passed; XPASSED = a named defect was not seen; "
                   "not run = no session of that arm recorded the check")


def build_protocol(sessions, problems):
    """Per stack, one row per protocol check with each arm's outcome; appends problems."""
    records = {}  # (stack, check) -> {arm: [record, ...]}
    for name, doc in sessions.items():
        for record in doc.get("protocol") or []:
            arm = record.get("arm") or {True: "patched", False: "vanilla"}.get(doc.get("fixed"))
            key = (record.get("stack") or doc.get("stack"), record["check"])
            records.setdefault(key, {}).setdefault(arm, []).append(dict(record, session=name))
    stacks = {}
    for (stack, check), arms in records.items():
        defect = next((r["defect"] for rs in arms.values() for r in rs if r.get("defect")), None)
        row = {"check": check, "defect": defect}
        for arm in PROTOCOL_ARMS:
            got = arms.get(arm)
            if not got:
                row[arm] = {"outcome": "not run", "evidence": "", "sessions": []}
                continue
            worst = min(got, key=lambda r: OUTCOME_RANK.index(r["outcome"])
                        if r["outcome"] in OUTCOME_RANK else -1)
            row[arm] = {"outcome": worst["outcome"], "evidence": worst.get("evidence") or "",
                        "sessions": sorted({r["session"] for r in got})}
            if worst["outcome"] in ("failed", "xpassed") or worst["outcome"] not in OUTCOME_RANK:
                problems.append(f"protocol check {check} ({stack} stack, {arm}): "
                                f"{worst['outcome']}"
                                + (f" (defect: {defect})" if worst["outcome"] == "xpassed"
                                   else "") + f" — {worst.get('evidence') or 'no evidence'}")
        stacks.setdefault(stack, []).append(row)
    summary = {}
    for stack, rows in stacks.items():
        summary[stack] = {
            "rows": rows,
            "checks": len(rows),
            "patched_passed": sum(r["patched"]["outcome"] == "passed" for r in rows),
            "vanilla_defects": sum(r["vanilla"]["outcome"] == "xfailed" for r in rows),
            "vanilla_passed": sum(r["vanilla"]["outcome"] == "passed" for r in rows),
        }
    return {"stacks": summary, "legend": PROTOCOL_LEGEND}


def protocol_counts(data):
    return (f"patched: {data['patched_passed']}/{data['checks']} checks pass; vanilla: "
            f"{data['vanilla_defects']} defects observed, {data['vanilla_passed']} checks pass")


def collect(results_dir, report_dir):
    """The report's data, built once: every renderer reads only this."""
    sessions, problems = load(results_dir)
    report = build(sessions, problems)
    report["protocol"] = build_protocol(sessions, report["problems"])
    report["timing"] = inputs.cell_timing(sessions)
    report.update(inputs.optional(results_dir, report_dir, report["problems"]))
    return report


def main(argv=None):
    from .render import html, markdown, terminal

    parser = argparse.ArgumentParser(prog="python -m tests.harness.report")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default="report")
    args = parser.parse_args(argv)
    out = Path(args.out)
    report = collect(args.results, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "observations.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out / "observations.md").write_text(markdown.render(report))
    (out / "index.html").write_text(html.render(report))
    terminal.render(report)
    print(f"\nwrote {out / 'observations.md'}, {out / 'observations.json'}, {out / 'index.html'}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
