"""The observations: 8 cells of (rum, hello_goodbyer, streaming) for this session.

Each cell starts its own server, proves its toggles are real (positive
controls), runs both real clients, evaluates the seed's criteria and asserts
the observation against the expectation model.  The record is kept before any
assertion, so a failing cell still lands in the results file with evidence.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import clients
from tests.harness.cells import BOOLS, STACKS, Cell, seed_verdict
from tests.harness.criteria import evaluate
from tests.harness.model import StackFacts, predict
from tests.harness.server import Server


def onoff(name):
    # "rum_on", not "rum=on": pytest -k cannot select an id with "=" in it.
    return lambda value: f"{name}_{'on' if value else 'off'}"


def cell_node(rum=False, hello_goodbyer=False, streaming=True):
    """The node id of one cell, e.g. for a child pytest."""
    ids = (onoff("rum")(rum), onoff("hello_goodbyer")(hello_goodbyer),
           onoff("streaming")(streaming))
    return f"tests/matrix/test_cells.py::test_cell[{'-'.join(ids)}]"


def imported_from_env(server, module):
    """The server imported `module` from its own environment: the env it runs in, or a
    directory its harness put first on PYTHONPATH (a history session's release)."""
    path = (server.ready.get("module_files") or {}).get(module)
    roots = [Path(server.python).parent.parent,  # <env>/bin/python
             *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return bool(path) and any(Path(path).resolve().is_relative_to(root.resolve())
                              for root in roots)


def served_by(server):
    """The process that announced readiness is the one that served: the server
    itself (python -m app) or, under gunicorn, its worker, not the master."""
    pid = server.ready.get("pid")
    requests = [e for e in server.events if e["event"] == "request"]
    worker = pid != server.proc.pid if server.launcher == "gunicorn" else pid == server.proc.pid
    return worker and bool(requests) and all(e.get("pid") == pid for e in requests)


def positive_controls(cell, server, page, releases=None, transcripts=()):
    """What this server really runs, checked against what the cell claims.

    ``releases`` ({name: version}, pytest --release) are the releases a history
    session put in place of the stack's pins: the server must report those.
    Every client must get its websocket (a handler that does not speak RFC 6455,
    e.g. gevent-websocket 0.2, answers no question about lazy layers).
    """
    versions = server.versions
    pins = STACKS[cell.stack]
    releases = releases or {}
    gws = versions["gevent-websocket"] or ""
    want_gws = (releases.get("gevent-websocket") or pins["gevent-websocket"]["version"]) + (
        "+fixed" if cell.fixed else "")
    releases_reported = {f"{name} release": versions.get(name) == version
                         for name, version in releases.items() if name != "gevent-websocket"}
    return {
        **releases_reported,
        "hello_goodbyer": ("Goodbye from the page!" in page) == cell.hello_goodbyer,
        "rum_script": ("NREUM" in page) == (cell.agent and cell.rum),
        "gevent-websocket build": gws == want_gws,
        "gevent-websocket imported from the server's env": imported_from_env(
            server, "geventwebsocket"),
        f"served by the {server.launcher} process": served_by(server),
        "agent loaded": server.ready.get("agent_loaded") == cell.agent,
        "agent active": server.ready.get("agent_active") == cell.agent,
        "websocket handshake": not [e for t in transcripts for e in t.events
                                    if e["event"] == "error" and e.get("stage") == "connect"],
        "no outbound connection": not [e for e in server.events if e["event"] == "outbound"
                                       and e.get("kind") != "udp_route_lookup"],
    }


@pytest.mark.cell
@pytest.mark.parametrize("streaming", BOOLS, ids=onoff("streaming"))
@pytest.mark.parametrize("hello_goodbyer", BOOLS, ids=onoff("hello_goodbyer"))
@pytest.mark.parametrize("rum", BOOLS, ids=onoff("rum"))
def test_cell(session, results, rum, hello_goodbyer, streaming):
    if session.agent is None or session.fixed is None:
        pytest.skip("cells need the session's claim: run through nox, or pass "
                    "--agent/--no-agent and --fixed/--no-fixed")
    cell = Cell(session.stack, session.agent, session.fixed, rum, hello_goodbyer, streaming)
    started = time.monotonic()
    server = Server(session.server_python, agent=cell.agent, rum=rum,
                    hello_goodbyer=hello_goodbyer, log_dir=session.logs, name=cell.slug,
                    launcher=session.launcher)
    with server:
        status, page = server.get("/")
        # Both clients at once, each on its own connection (criteria tell their
        # events apart by the request id their query names): a cell waits for
        # one client process start-up, not two (tests/bench: -0.1 s a cell).
        with ThreadPoolExecutor(len(clients.CLIENTS)) as pool:
            transcripts = list(pool.map(
                lambda c: clients.run(c, f"{server.ws_url}{cell.route}?client={c}"),
                clients.CLIENTS))
        exchanged = time.monotonic()
    events = server.events
    duration = time.monotonic() - started
    controls = positive_controls(cell, server, page, session.releases, transcripts)
    facts = StackFacts.from_versions(server.versions)
    expected = predict(cell, facts)
    observed = [evaluate(cell, t, events) for t in transcripts]
    results.add("cells", {
        "cell": cell.as_dict(), "seed": seed_verdict(cell),
        "verdict": observed[0].verdict, "observed": [o.as_dict() for o in observed],
        "expected": expected.as_dict(), "facts": facts.__dict__, "controls": controls,
        "versions": server.versions, "page_status": status,
        "transcripts": [t.as_dict() for t in transcripts],
        "server_events": events, "server_ready_after": server.ready_after,
        "client_durations": {t.client: round(t.duration, 3) for t in transcripts},
        "duration": round(duration, 3), "launcher": server.launcher,
        # Where a cell's time goes: spawn to readiness, page and both clients, stop.
        "phases": {"start": round(server.ready_after, 3),
                   "exchange": round(exchanged - started - server.ready_after, 3),
                   "stop": round(started + duration - exchanged, 3)},
    })

    failed = [name for name, ok in controls.items() if not ok]
    assert not failed, server.explain(
        f"{cell.slug}: positive controls failed: {failed}; versions={server.versions}, "
        f"page excerpt={page[:300]!r}")
    for obs in observed:
        assert obs.comparable() == {k: v for k, v in expected.as_dict().items()
                                    if k in obs.comparable()}, server.explain(
            f"{cell.slug}, {obs.client} client: expected {expected.as_dict()}\n"
            f"  observed {obs.comparable()}\n  evidence {json.dumps(obs.evidence)}")
