"""The benchmark's figures, each with its target and verdict: report/bench.{json,md}.

``python -m tests.bench.report --bench report/bench.json --out report`` renders
the markdown again from the JSON; tests/bench/run.py makes both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from tests.bench import handler_cost
from tests.harness import records, timing
from tests.harness.records import SessionResults, session_rerun

TARGETS = {
    "cold_ratio": 0.3,  # uv cold install <= 0.3 x virtualenv (pip) cold install
    "warm_ratio": 1.3,  # nox -R wall <= 1.3 x the sum of its pytest phases
    "cell_median": 0.4,  # s, a cell from server spawn to its evaluation
    "patched_over_vanilla": 0.97,  # echo round trips/s
}


def cell_stats(results_dir):
    """Per (stack, agent): cell wall time and its phases (records.Phases: start, exchange,
    stop), over the sessions' results files in ``results_dir``; "all": every cell."""
    found = [
        record
        for path in sorted(Path(results_dir).glob("*.json"))
        if path.name != "conformance.json"
        for record in records.read(path, SessionResults, session_rerun).cells
    ]
    out = timing.phase_stats(found)
    out["all"] = {"duration": timing.dist([r.duration for r in found])}
    return out


def verdict(value, target, higher_is_better=False):
    """("pass"|"miss", how far from the target when missed)."""
    if value is None:
        return "n/a", "not measured"
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "pass", ""
    return "miss", f"{(value - target) / target:+.0%} vs target"


def figures(doc):
    """[(figure, value, target, verdict, note)] in the order of the issue."""
    rows = []
    m = doc.get("matrix") or {}
    cu, cv, w = m.get("cold_uv"), m.get("cold_virtualenv"), m.get("warm")
    if cu and cv:
        ratio = cu["wall"] / cv["wall"]
        rows += [
            (
                "cold install, uv backend (all default sessions)",
                f"{cu['wall']:.1f} s",
                "",
                "",
                _failed(cu),
            ),
            ("cold install, -db virtualenv (pip)", f"{cv['wall']:.1f} s", "", "", _failed(cv)),
            (
                "uv cold / virtualenv cold",
                f"{ratio:.2f}x",
                f"<= {TARGETS['cold_ratio']}x",
                *verdict(ratio, TARGETS["cold_ratio"]),
            ),
        ]
    if w:
        ratio = w["wall"] / w["pytest_sum"] if w["pytest_sum"] else None
        rows += [
            ("warm `nox -R` (cells + report), wall", f"{w['wall']:.1f} s", "", "", _failed(w)),
            (
                "  of which pytest phases (sum)",
                f"{w['pytest_sum']:.1f} s",
                "",
                "",
                f"overhead {w['overhead']:.1f} s",
            ),
            (
                "warm / pytest phases",
                f"{ratio:.3f}x" if ratio else "n/a",
                f"<= {TARGETS['warm_ratio']}x",
                *verdict(ratio, TARGETS["warm_ratio"]),
            ),
        ]
    cells = doc.get("cells") or {}
    for group, d in cells.items():
        dur = d.get("duration")
        if not dur:
            continue
        note = ""
        if group != "all":
            note = (
                f"p90 {dur['p90']:.3f} s; start median {d['start']['median']:.3f} / p90 "
                f"{d['start']['p90']:.3f} s; exchange median {d['exchange']['median']:.3f}"
                f" / p90 {d['exchange']['p90']:.3f} s; n={dur['n']}"
            )
        else:
            note = f"p90 {dur['p90']:.3f} s; n={dur['n']}"
        v, how = verdict(dur["median"], TARGETS["cell_median"])
        rows.append(
            (
                f"cell median, {group}",
                f"{dur['median']:.3f} s",
                f"<= {TARGETS['cell_median']} s",
                v,
                "; ".join(x for x in (how, note) if x),
            )
        )
    st = doc.get("stack") or {}
    for run in ("cold", "warm"):
        if st.get(run) is None:
            continue
        target = st["targets"][run]
        v, how = verdict(st[run], target)
        rows.append(
            (
                f"`nox -s stack -- -r {st['stack']}`, {run}",
                f"{st[run]:.1f} s",
                f"<= {target:.0f} s",
                v,
                "; ".join(
                    x
                    for x in (
                        how,
                        f"exit {st[run + '_exit']}" if st[run + "_exit"] else "",
                        "server env deleted first" if run == "cold" else "envs reused",
                    )
                    if x
                ),
            )
        )
    t = doc.get("throughput")
    if t:
        for name, r in t["rates"].items():
            rows.append(
                (
                    f"echo round trips/s, {name}",
                    f"{r['median']:.0f}/s",
                    "",
                    "",
                    f"min {r['min']:.0f}, max {r['max']:.0f}, n={r['n']}",
                )
            )
        for name, r in t["ratios"].items():
            target = r.get("target")
            v, how = verdict(r["median"], target, True) if target else ("", "")
            rows.append(
                (
                    f"ratio {name}",
                    f"{r['median']:.3f}",
                    f">= {target}" if target else "",
                    v,
                    "; ".join(
                        x for x in (how, f"per-round min {r['min']:.3f}, max {r['max']:.3f}") if x
                    ),
                )
            )
    return rows


def _failed(phase):
    failed = phase.get("failed") or []
    return f"sessions failed: {', '.join(failed)}" if failed else ""


PAIRED = ("cold", "warm", "ci")  # the runs a paired main-job bench (--vs) measures twice
RUN_NAMES = {
    "cold": "plain `nox`, fresh clone (cold)",
    "warm": "`nox -R` (warm)",
    "no_xdist": "`nox -R`, MATRIX_WORKERS=0 (sessions 2 at a time only)",
    "xdist_all": "`nox -R`, MATRIX_WORKERS=2 (2 xdist workers everywhere)",
    "serial": "`nox -R -j 1`, MATRIX_WORKERS=0 (no concurrency)",
    "ci": "`nox -t ci`, fresh clone (the test command, .ci/run)",
}
SESSION_CHANGE = 2.0  # s: a session whose time moved more than this is listed


def _run_row(key, run, target, before=None):
    v, how = verdict(run["wall"], target) if target else ("", "")
    failed = [n for n, s in run["sessions"].items() if s["status"] not in ("success",)]
    note = "; ".join(
        x
        for x in (
            how,
            f"exit {run['returncode']}" if run["returncode"] else "",
            f"not successful: {failed}" if failed else "",
        )
        if x
    )
    return (
        RUN_NAMES[key],
        f"{run['wall']:.0f} s",
        f"<= {target:.0f} s" if target else "",
        v,
        f"{before['wall']:.0f} s" if before else "",
        note,
    )


def main_job_rows(doc):
    """[(figure, now, target, verdict, before, note)]: the main job's runs; with a paired
    run (``--vs``), the measured commit's beside the earlier one's."""
    m = doc.get("main_job") or {}
    if not m:
        return []
    targets = m["targets"]
    now, before = (m["after"], m["before"]) if "after" in m else (m, {})
    rows = [
        _run_row(key, now[key], targets.get(key), before.get(key))
        for key in RUN_NAMES
        if now.get(key)
    ]
    walls = m.get("pytest_walls") or {}
    if walls:
        rows.append(
            (
                "pytest wall per main-job session (cells, protocol), median / max",
                f"{statistics.median(walls.values()):.1f} / {max(walls.values()):.1f} s",
                "",
                "",
                "",
                f"sum {sum(walls.values()):.0f} s over {len(walls)} sessions",
            )
        )
    d = (m.get("cells") or {}).get("all", {}).get("duration")
    if d:
        rows.append(
            (
                "a cell (spawn to evaluation), median / p90",
                f"{d['median']:.2f} / {d['p90']:.2f} s",
                "",
                "",
                "",
                f"n={d['n']}; two sessions at a time",
            )
        )
    return rows


def session_changes(m, key):
    """[(session, before s, after s)] of a paired run whose duration moved more than
    SESSION_CHANGE, or that exists on one side only."""
    before = m["before"].get(key, {}).get("sessions", {})
    after = m["after"].get(key, {}).get("sessions", {})
    out = []
    for name in dict.fromkeys([*before, *after]):
        b, a = before.get(name), after.get(name)
        if b is None or a is None or abs(a["duration"] - b["duration"]) > SESSION_CHANGE:
            out.append((name, b and b["duration"], a and a["duration"]))
    return out


def _commit_line(m):
    sides = (
        [f"before {m['before']['commit']}", f"after {m['after']['commit']}"]
        if "after" in m
        else [f"commit {m['commit']}"]
    )
    dirty = m.get("dirty") or m.get("after", {}).get("dirty")
    caches = "empty" if m.get("empty_caches") else "warm"
    return (
        ", ".join(sides).capitalize()
        + (" (the checkout had uncommitted changes: not measured)" if dirty else "")
        + f"; cold runs with {caches} package caches; load before "
        f"{'/'.join(f'{v:.2f}' for v in m['load_before'])}, after "
        f"{'/'.join(f'{v:.2f}' for v in m['load_after'])}."
    )


def render_main_job(doc):
    m = doc.get("main_job") or {}
    if not m:
        return []
    lines = [
        "## The main job and the test command",
        "",
        _commit_line(m),
        "",
        "| figure | now | target | verdict | before | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in main_job_rows(doc):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    if "after" in m:
        for key in PAIRED:
            changes = session_changes(m, key) if m["after"].get(key) else []
            if not changes:
                continue
            lines += [
                "",
                f"{RUN_NAMES[key]}: sessions that moved more than {SESSION_CHANGE:.0f} s",
                "",
                "| session | before | after |",
                "|---|---|---|",
            ]
            lines += [
                f"| {n} | {'' if b is None else f'{b:.1f} s'} | "
                f"{'' if a is None else f'{a:.1f} s'} |"
                for n, b, a in changes
            ]
        return lines + [""]
    lines += [
        "",
        "| session | cold | warm | no xdist | xdist everywhere | serial |",
        "|---|---|---|---|---|---|",
    ]
    names = dict.fromkeys([*m["cold"]["sessions"], *m["warm"]["sessions"]])
    for name in names:
        cells = [
            m.get(k, {}).get("sessions", {}).get(name)
            for k in ("cold", "warm", "no_xdist", "xdist_all", "serial")
        ]
        lines.append(
            f"| {name} | "
            + " | ".join("" if c is None else f"{c['duration']:.0f} s" for c in cells)
            + " |"
        )
    if m.get("ci"):
        lines += [
            "",
            "`nox -t ci` per session: "
            + "; ".join(f"{n} {s['duration']:.0f} s" for n, s in m["ci"]["sessions"].items())
            + ".",
        ]
    return lines + [""]


def render(doc: dict[str, Any]) -> str:
    lines = ["# Benchmarks (`nox -s bench`)", ""]
    machine = doc.get("machine", {})
    lines += [
        f"Run {doc.get('started', '?')}, {machine.get('cpus', '?')} CPUs, Python "
        f"{machine.get('python', '?')}; measurements took {doc.get('wall', 0):.0f} s.  "
        "Load average (1/5/15 min): when `nox -s bench` started "
        f"{_load(doc, 'session_start')}; after its installs, as the measurements began "
        f"{_load(doc, 'before')}; at the end {_load(doc, 'after')} (the bench's own load "
        "included).",
        "",
    ]
    first = (doc.get("load", {}).get("session_start") or doc.get("load", {}).get("before") or [0])[
        0
    ]
    if first >= 0.5:
        lines += [
            f"**The machine was loaded when the bench started (1-minute load {first:.2f}"
            " >= 0.5): the figures carry that load.**",
            "",
        ]
    lines += render_main_job(doc)
    if figures(doc):  # none when only the main job ran (--only main-job)
        lines += ["| figure | value | target | verdict | note |", "|---|---|---|---|---|"]
    for row in figures(doc):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    misses = [
        r for r in figures(doc) + [(*r[:4], r[5]) for r in main_job_rows(doc)] if r[3] == "miss"
    ]
    lines += [
        "",
        f"Targets missed: {len(misses)}"
        + (
            ": " + "; ".join(f"{r[0]} ({r[1]}, {r[4].split(';')[0]})" for r in misses)
            if misses
            else "."
        ),
    ]
    method = _method(doc)
    lines += ["", "## What is measured", "", *method] if method else []
    prof = doc.get("profile")
    if prof:
        lines += [
            "",
            "## Where a server's start goes (pyinstrument)",
            "",
            "| server | to readiness (profiled) | by owner |",
            "|---|---|---|",
        ]
        for name, p in prof.items():
            owners = ", ".join(f"{k} {_seconds(v)}" for k, v in p.get("by_owner", {}).items())
            lines.append(f"| {name} | {p.get('to_listening')} s | {owners} |")
        lines += [
            "",
            "Full profiles: "
            + ", ".join(f"`{Path(p['profile']).name}`" for p in prof.values() if p.get("profile"))
            + ".",
        ]
    why = _why(doc)  # the per-step figures' misses; the main job's are in its table
    if why or not misses:
        lines += ["", "## Where the misses come from", ""] + (why or ["No target missed."])
    m = doc.get("matrix") or {}
    if m.get("cold_uv") and m.get("cold_virtualenv"):
        cu, cv = m["cold_uv"]["commands"], m["cold_virtualenv"]["commands"]
        lines += [
            "",
            "## Cold install, by kind of command (s, all sessions)",
            "",
            "| command | uv backend | -db virtualenv |",
            "|---|---|---|",
        ]
        for name in dict.fromkeys([*cu, *cv]):
            lines.append(f"| {name} | {cu.get(name, 0):.1f} | {cv.get(name, 0):.1f} |")
    if m:
        lines += [
            "",
            "## Per session (s)",
            "",
            "| session | cold uv | cold virtualenv | warm wall | warm pytest |",
            "|---|---|---|---|---|",
        ]
        names = list(
            dict.fromkeys(
                [
                    *m.get("cold_uv", {}).get("sessions", {}),
                    *m.get("cold_virtualenv", {}).get("sessions", {}),
                    *m.get("warm", {}).get("sessions", {}),
                ]
            )
        )
        for name in names:
            cells = []
            for key, field in (
                ("cold_uv", "wall"),
                ("cold_virtualenv", "wall"),
                ("warm", "wall"),
                ("warm", "pytest"),
            ):
                s = m.get(key, {}).get("sessions", {}).get(name)
                cells.append(
                    ""
                    if s is None
                    else f"{s[field]:.1f}"
                    + ("" if s.get("status") in ("success", None) else f" ({s['status']})")
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if doc.get("handlers"):
        lines += ["", *handler_cost.render(doc["handlers"]).splitlines()]
    for note in doc.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# Commands a cold run does the same way under either backend: the 2.7 server's
# virtualenv and pip, the wheel cache, npm.  What is left is the backend's own work.
BACKEND_NEUTRAL = (
    "pip install (2.7 server)",
    "pip wheel (2.7 wheelhouse)",
    "virtualenv (2.7 env)",
    "gevent-websocket wheel (cached build)",
    "npm ci",
)


def _why(doc):
    """One paragraph per missed target, from this run's own breakdowns."""
    out = []
    rows = {r[0]: r for r in figures(doc)}
    m = doc.get("matrix") or {}
    if rows.get("uv cold / virtualenv cold", [None] * 4)[3] == "miss":
        cu, cv = m["cold_uv"], m["cold_virtualenv"]
        neutral_u = sum(cu["commands"].get(k, 0) for k in BACKEND_NEUTRAL)
        neutral_v = sum(cv["commands"].get(k, 0) for k in BACKEND_NEUTRAL)
        own_u, own_v = cu["wall"] - neutral_u, cv["wall"] - neutral_v
        out.append(
            f"- **uv cold / virtualenv cold.** {neutral_u:.1f} s of the uv run's "
            f"{cu['wall']:.1f} s is work either backend does the same way (the 2016 stack's "
            "CPython 2.7 environments: uv cannot make them, so virtualenv + pip build them "
            f"under both; the gevent-websocket wheel cache; npm): {neutral_v:.1f} s in the pip "
            f"run.  The rest, the backends' own work, is {own_u:.1f} s with uv vs "
            f"{own_v:.1f} s with pip ({own_u / own_v:.2f}x).  uv's part is its `uv pip "
            f"install` runs ({cu['commands'].get('uv pip install', 0):.1f} s), which compile "
            "bytecode (UV_COMPILE_BYTECODE) for the servers and the harness's runtime: this "
            "machine sets PYTHONDONTWRITEBYTECODE, so without it every server start would "
            "compile Flask again (readiness 0.50 s instead of 0.19 s, once per cell)."
        )
    prof = doc.get("profile") or {}
    newrelic = (prof.get("agent on") or {}).get("by_owner", {}).get("newrelic")
    flask_on = (prof.get("agent on") or {}).get("by_owner", {}).get("flask")
    flask_off = (prof.get("agent off") or {}).get("by_owner", {}).get("flask")
    for group, d in (doc.get("cells") or {}).items():
        row = rows.get(f"cell median, {group}")
        if not row or row[3] != "miss" or group == "all":
            continue
        dur, ready, ex = d["duration"]["median"], d["start"]["median"], d["exchange"]["median"]
        text = (
            f"- **cell median, {group}** ({dur:.3f} s): spawn-to-ready {ready:.3f} s, the "
            f"exchange (GET /, both clients) {ex:.3f} s, the stop (the server's stop and "
            f"exit, the harness) {d['stop']['median']:.3f} s."
        )
        off = (doc.get("cells") or {}).get(group.replace("agent on", "agent off"))
        if "agent on" in group and off:
            text += (
                f"  The agent adds {ready - off['start']['median']:+.3f} s to spawn-to-"
                f"ready and {d['stop']['median'] - off['stop']['median']:+.3f} s to the "
                "stop (its shutdown at exit: a final harvest, a thread join) over agent off."
            )
        if group == "today agent on" and newrelic:
            text += (
                f"  In the profiled start, importing newrelic takes {newrelic:.3f} s and "
                f"Flask's import under its import hooks {flask_on:.3f} s (vs "
                f"{flask_off:.3f} s without).  None of it is ours: app/'s own code is "
                f"{_seconds(prof['agent on']['by_owner'].get('ours', 0))} of the start."
            )
        if group.endswith("agent off"):
            text += (
                "  Spawn-to-ready is the interpreter and its imports (profile above: "
                "Flask, gevent); the exchange is two client processes (python, node) "
                "starting at once on 2 cores."
            )
        out.append(text)
    if rows.get("cell median, all", [None] * 4)[3] == "miss":
        out.append(
            "- **cell median, all**: the median of every cell above (both stacks, "
            "agent off and on)."
        )
    for label, r in ((doc.get("throughput") or {}).get("ratios") or {}).items():
        if r.get("pass") is False:
            out.append(
                f"- **ratio {label}** ({r['median']:.3f}): per-round min {r['min']:.3f},"
                f" max {r['max']:.3f}: compare the spread with the distance to the "
                "target before reading it as a cost of the patch."
            )
    return out


def _seconds(value):
    return "< 1 ms" if value < 0.001 else f"{value:.3f} s"


def _load(doc, when):
    values = doc.get("load", {}).get(when)
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def _method(doc):
    m = doc.get("matrix") or {}
    t = doc.get("throughput") or {}
    out = []
    if m:
        out.append(
            f"- **Matrix wall time.** Every nox run uses its own `--envdir` "
            f"(`{m.get('envdir')}`) and its own results/report directories "
            "(MATRIX_RESULTS, MATRIX_REPORT), so the developers' `.nox`, `results/` and "
            "`report/` are untouched.  *Cold*: `nox --install-only -N` into fresh environments "
            "for every default session (" + ", ".join(m.get("default_sessions", [])) + "), "
            "uv backend vs `-db virtualenv` (pip), package caches warm (uv's and pip's caches, "
            "the cached gevent-websocket wheels, the 2.7 wheelhouse, app/node_modules); "
            "pytest is skipped, so this is the install phase of a cold run.  *Warm*: "
            f"`{m.get('warm', {}).get('command', '')}` with PYTEST_ADDOPTS="
            f"`{m.get('warm', {}).get('pytest_addopts', '')}` in the environments the cold uv "
            "run made: every cell of every session, then the report.  Each pytest phase runs "
            "from nox's `nox > pytest ...` line to its next `nox >` line (stamped on arrival); "
            "overhead = wall - their sum.  With pytest cut to the cells, the overhead weighs "
            "more than in a full run, so this ratio bounds a full warm run's from above."
        )
        out.append(
            "- **Per cell.** From that warm run's results files: `duration` (server spawn, GET "
            "/, both clients, server stop, evaluation) and its `phases`, as each cell records "
            "them (tests/harness/records.py `Phases`): start (spawn to the readiness line), "
            "exchange (GET / and both clients, at once), stop (the server's stop, the "
            "harness's evaluation)."
        )
    if t:
        out.append(
            f"- **Throughput.** One server per configuration, all up at once, on today's "
            "stack (the bench session's own environment: vanilla gevent-websocket + the agent; "
            "the patched build first on PYTHONPATH for the patched servers).  websocket-client "
            f"in the bench process: one connection per measurement, {t.get('payload_bytes')}-"
            f"byte text messages echoed one at a time for {t.get('seconds_per_measurement')} s "
            f"after a warm-up; {t.get('rounds')} rounds, every configuration once per round in "
            "an order shuffled per round; each ratio is taken within a round (median, min, "
            "max over rounds).  `flask` is the Flask view `/echo`; `raw` is `/raw/echo`, the "
            "same loop (app/web.py `echo()`) as a bare WSGI app: the ceiling.  Per message "
            "both run that same loop, Flask only sets the connection up, so flask/raw near 1 "
            "is expected.  Agent on = developer mode, RUM on; today's agent ignores websocket "
            "upgrade requests."
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.report")
    parser.add_argument("--bench", required=True, help="bench.json")
    parser.add_argument("--out", required=True, help="directory for bench.md")
    args = parser.parse_args(argv)
    doc = json.loads(Path(args.bench).read_text())
    (Path(args.out) / "bench.md").write_text(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
