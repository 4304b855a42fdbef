"""``python -m tests.harness.report``: merge session results into the observations.

Writes report/observations.md (the seed's own numbered-list format, with the
seed's published value beside each cell), report/observations.json and a
self-contained report/index.html, prints the table, and exits non-zero if any
cell disagrees with its expectation or an expected session has no results.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from .cells import SEED_WITH_AGENT, SEED_WITHOUT_AGENT, STACKS, parse_seed_list, session_name, slug

SEED_ORDER = [(agent, flags) for agent, text in ((True, SEED_WITH_AGENT),
                                                 (False, SEED_WITHOUT_AGENT))
              for flags, _ in parse_seed_list(text)]


def load(results_dir):
    """{session name: document}; a file that does not parse is a failure, not a gap."""
    sessions, problems = {}, []
    for stack in STACKS:
        for agent in (False, True):
            for fixed in (False, True):
                name = session_name(stack, agent, fixed)
                path = Path(results_dir) / (slug(name) + ".json")
                if not path.exists():
                    problems.append(f"{name}: no results file ({path}); the session did not "
                                    "run or crashed before pytest finished")
                    continue
                try:
                    sessions[name] = json.loads(path.read_text())
                except ValueError as exc:
                    problems.append(f"{name}: unreadable results file {path}: {exc}")
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
    for stack in STACKS:
        rows = []
        for agent, flags in SEED_ORDER:
            key = (stack, agent, *flags)
            record = cells.get(key)
            skipped = [d for n, d in sessions.items() if d.get("status") == "skipped"
                       and n == session_name(stack, agent, flags[0])]
            row = {"agent": agent, "fixed": flags[0], "rum": flags[1],
                   "hello_goodbyer": flags[2], "streaming": flags[3]}
            if record is None:
                row["status"] = "skipped" if skipped else "missing"
                if not skipped and not any(p.startswith(session_name(stack, agent, flags[0]))
                                           for p in problems):
                    problems.append(f"{session_name(stack, agent, flags[0])}: cell {key} "
                                    "has no observation")
                rows.append(row)
                continue
            observed = {o["client"]: o for o in record["observed"]}
            agree = all(o["verdict"] == record["expected"]["verdict"]
                        and o["iterable_closed"] == record["expected"]["iterable_closed"]
                        for o in observed.values())
            if not agree:
                problems.append(f"{stack} {row}: observed "
                                f"{ {k: o['verdict'] for k, o in observed.items()} } but the "
                                f"model expects {record['expected']['verdict']}")
            row.update(status="observed", verdict=record["verdict"], seed=record["seed"],
                       expected=record["expected"]["verdict"], matches_model=agree,
                       closed=all(o["iterable_closed"] for o in observed.values()),
                       valid_close=all(o["valid_close_frame"] for o in observed.values()),
                       clients=sorted(observed), versions=record["versions"],
                       differs_from_seed=record["verdict"] != record["seed"],
                       cause=cause(record), conclusion=conclusion_predicts(record["cell"]))
            rows.append(row)
        observed_rows = [r for r in rows if r["status"] == "observed"]
        conclusion = None
        if observed_rows:
            wrong = [r for r in observed_rows if r["verdict"] != r["conclusion"]]
            conclusion = {"confirmed": not wrong and len(observed_rows) == len(rows),
                          "cells": len(observed_rows), "contradicting": len(wrong)}
        stacks[stack] = {"rows": rows, "conclusion": conclusion,
                         "reproduced": sum(1 for r in observed_rows if not r["differs_from_seed"]),
                         "observed": len(observed_rows)}
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


def flags(row):
    return ",".join(str(row[k]) for k in ("fixed", "rum", "hello_goodbyer", "streaming"))


def yes(value):
    return "yes" if value else "no"


def terminal(report):
    lines = []
    for stack, data in report["stacks"].items():
        lines.append(f"\n{stack} stack ({stack_versions(data['rows'])})")
        lines.append(f"{'agent':6} {'fixed,rum,hello_goodbyer,streaming':36} obs seed model "
                     "closed close-frame")
        for r in data["rows"]:
            if r["status"] != "observed":
                lines.append(f"{str(r['agent']):6} {flags(r):36} ({r['status']})")
                continue
            mark = " *" if r["differs_from_seed"] else ""
            lines.append(f"{str(r['agent']):6} {flags(r):36} {r['verdict']:3} {r['seed']:4} "
                         f"{r['expected']:5} {yes(r['closed']):6} "
                         f"{'valid' if r['valid_close'] else 'INVALID'}{mark}")
        c = data["conclusion"]
        lines.append(f"reproduced {data['reproduced']}/{data['observed']} seed cells; seed's "
                     f"conclusion: {conclusion_text(c)}")
    lines += protocol_terminal(report)
    if report["problems"]:
        lines.append("\nPROBLEMS:")
        lines += [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines)


def conclusion_text(c):
    if c is None:
        return "not evaluated (no cells)"
    if c["confirmed"]:
        return f"confirmed on all {c['cells']} cells"
    return f"refuted by {c['contradicting']} of {c['cells']} cells"


def markdown(report):
    out = ["# Observations", "",
           "Generated by `nox` from real server processes and clients; compare with the seed's",
           "hand-typed list. Format as in the seed: `fixed,rum,hello_goodbyer,streaming: verdict`,",
           "then the seed's published value; **≠** marks a difference, with its upstream cause.",
           "Added columns: the server closed the iterable (PEP 3333); the websocket ended with",
           "a valid close frame.", ""]
    for stack, data in report["stacks"].items():
        out += [f"## {stack} stack", "",
                f"{stack_versions(data['rows'])} (as the servers reported them)", ""]
        for agent in (True, False):
            out += ["Always use the agent." if agent else "Same but without the agent.", ""]
            for r in (r for r in data["rows"] if r["agent"] == agent):
                if r["status"] != "observed":
                    out.append(f"1. {flags(r)}: ({r['status']})")
                    continue
                diff = " **≠**" if r["differs_from_seed"] else ""
                out.append(f"1. {flags(r)}: {r['verdict']} (seed: {r['seed']}){diff}; "
                           f"closed: {yes(r['closed'])}; close frame: "
                           f"{'valid' if r['valid_close'] else 'invalid'}"
                           + (f" — {r['cause']}" if r["differs_from_seed"] else ""))
            out.append("")
        out += [f"Reproduced {data['reproduced']}/{data['observed']} of the seed's cells. "
                f"The seed's conclusion (\"fails only with the buggy gevent-websocket and a view "
                f"that returns an iterator\") is {conclusion_text(data['conclusion'])}.", ""]
    out += protocol_markdown(report)
    if report["problems"]:
        out += ["## Problems", ""] + [f"- {p}" for p in report["problems"]] + [""]
    return "\n".join(out)


def page(report):
    body = []
    for stack, data in report["stacks"].items():
        body.append(f"<h2>{html.escape(stack)} stack</h2><table><tr><th>agent</th>"
                    "<th>fixed,rum,hello_goodbyer,streaming</th><th>observed</th><th>seed</th>"
                    "<th>model</th><th>closed</th><th>close frame</th><th>cause</th></tr>")
        for r in data["rows"]:
            if r["status"] != "observed":
                body.append(f"<tr><td>{r['agent']}</td><td>{flags(r)}</td>"
                            f"<td colspan=6>{r['status']}</td></tr>")
                continue
            cls = ' class="diff"' if r["differs_from_seed"] else ""
            body.append(f"<tr{cls}><td>{r['agent']}</td><td>{flags(r)}</td>"
                        f"<td>{r['verdict']}</td><td>{r['seed']}</td><td>{r['expected']}</td>"
                        f"<td>{yes(r['closed'])}</td>"
                        f"<td>{'valid' if r['valid_close'] else 'invalid'}</td>"
                        f"<td>{html.escape(r['cause'])}</td></tr>")
        body.append(f"</table><p>Reproduced {data['reproduced']}/{data['observed']}; seed's "
                    f"conclusion {html.escape(conclusion_text(data['conclusion']))}.</p>")
    body.append(protocol_page(report))
    if report["problems"]:
        body.append("<h2>Problems</h2><ul>" + "".join(
            f"<li>{html.escape(p)}</li>" for p in report["problems"]) + "</ul>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 8px}tr.diff{background:#fff3c4}"
             "td.diff{background:#fff3c4}td.bad{background:#f4c7c3}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Observations</title>"
            f"<style>{style}</style></head><body><h1>Observations</h1>{''.join(body)}"
            "</body></html>\n")


# -- the protocol checks (tests/test_protocol.py): check x (vanilla, patched) --------

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


def protocol_terminal(report):
    lines = []
    for stack, data in (report.get("protocol") or {}).get("stacks", {}).items():
        width = max(len("check"), *(len(r["check"]) for r in data["rows"]))
        lines.append(f"\nprotocol checks, {stack} stack (vanilla gevent-websocket / patched "
                     "+fixed)")
        lines.append(f"{'check':{width}} {'vanilla':8} {'patched':8} defect (vanilla)")
        for r in data["rows"]:
            vanilla = OUTCOME_TEXT.get(r["vanilla"]["outcome"], "?")
            patched = OUTCOME_TEXT.get(r["patched"]["outcome"], "?")
            lines.append(f"{r['check']:{width}} {vanilla:8} {patched:8} "
                         f"{r['defect'] or '(control: no defect)'}")
        lines.append(protocol_counts(data))
        lines.append(f"({report['protocol']['legend']})")
    return lines


def _md_cell(text, limit=240):
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("|", "\\|")


def protocol_markdown(report):
    out = []
    for stack, data in (report.get("protocol") or {}).get("stacks", {}).items():
        out += [f"## Protocol checks, {stack} stack", "",
                "RFC 6455 and bad input (tests/test_protocol.py), on vanilla gevent-websocket "
                "and on the patched build. " + report["protocol"]["legend"] + ".", "",
                "| check | vanilla | patched | defect (vanilla) | vanilla evidence |",
                "|---|---|---|---|---|"]
        for r in data["rows"]:
            out.append(f"| `{r['check']}` | {OUTCOME_TEXT.get(r['vanilla']['outcome'], '?')} | "
                       f"{OUTCOME_TEXT.get(r['patched']['outcome'], '?')} | "
                       f"{_md_cell(r['defect'] or 'control: no defect')} | "
                       f"{_md_cell(r['vanilla']['evidence'])} |")
        out += ["", protocol_counts(data).capitalize() + ".", ""]
    return out


def protocol_page(report):
    body = []
    for stack, data in (report.get("protocol") or {}).get("stacks", {}).items():
        body.append(f"<h2>Protocol checks, {html.escape(stack)} stack</h2>"
                    f"<p>{html.escape(report['protocol']['legend'])}.</p><table><tr>"
                    "<th>check</th><th>vanilla</th><th>patched</th><th>defect (vanilla)</th>"
                    "<th>vanilla evidence</th></tr>")
        for r in data["rows"]:
            cells = []
            for arm in PROTOCOL_ARMS:
                outcome = r[arm]["outcome"]
                cls = ' class="bad"' if outcome in ("failed", "xpassed") else (
                    ' class="diff"' if outcome == "xfailed" else "")
                cells.append(f"<td{cls} title=\"{html.escape(r[arm]['evidence'])}\">"
                             f"{html.escape(OUTCOME_TEXT.get(outcome, outcome))}</td>")
            body.append(f"<tr><td><code>{html.escape(r['check'])}</code></td>{''.join(cells)}"
                        f"<td>{html.escape(r['defect'] or 'control: no defect')}</td>"
                        f"<td>{html.escape(r['vanilla']['evidence'][:400])}</td></tr>")
        body.append(f"</table><p>{html.escape(protocol_counts(data))}.</p>")
    return "".join(body)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.harness.report")
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default="report")
    args = parser.parse_args(argv)
    sessions, problems = load(args.results)
    report = build(sessions, problems)
    report["protocol"] = build_protocol(sessions, report["problems"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "observations.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out / "observations.md").write_text(markdown(report))
    (out / "index.html").write_text(page(report))
    print(terminal(report))
    print(f"\nwrote {out / 'observations.md'}, {out / 'observations.json'}, {out / 'index.html'}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
