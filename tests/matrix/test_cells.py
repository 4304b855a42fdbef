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
from tests.harness.cells import (
    COLUMN_AXES,
    DEFAULT_HANDLER,
    HANDLERS,
    NO_LAYER,
    STACKS,
    build_version,
    cells,
    layer_pins,
    seed_verdict,
)
from tests.harness.criteria import evaluate
from tests.harness.model import StackFacts, predict
from tests.harness.records import CellRecord, Phases, agrees, comparable
from tests.harness.server import Server, ServerError

# s the tracked layer gets, once both clients are done, to finish every connection's
# work (one wait per server, not per client): a layer that finishes at close() or on
# exhaustion has done so before the server closed TCP, which the clients waited for.
LAYER_BOUND = 1.0

# The 8 columns of an arm; a test id is the cell's slug over them
# (rum_on-hello_goodbyer_off-streaming_off: no "=", which pytest -k cannot select).
COLUMNS = [{axis: getattr(c, axis) for axis in COLUMN_AXES} for c in cells("today", False, False)]


def imported_from_env(server, module):
    """The server imported `module` from its own environment: the env it runs in, or a
    directory its harness put first on PYTHONPATH (a history session's release).

    The handler's module is where the readiness line's ``handler`` says (app/handlers.py
    describe()); other modules, and servers that do not describe it, in ``module_files``.
    """
    handler = server.ready.get("handler") or {}
    path = (handler.get("module_file") if handler.get("module") == module
            else (server.ready.get("module_files") or {}).get(module))
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


def handler_named(cell, server):
    """The handler in use is the one the cell names: its name and pinned version in the
    readiness line, and the class of the websocket every upgrade gave a view."""
    described = server.ready.get("handler") or {}
    pins = HANDLERS[cell.handler]
    accepted = [e for e in server.events if e["event"] == "websocket_accepted"]
    return (described.get("name") == cell.handler and described.get("version") == pins["version"]
            and bool(accepted)
            and all(e.get("websocket_class") == pins["websocket_class"] for e in accepted))


def handler_controls(cell, server):
    """Which websocket handler served: gevent-websocket's build, or another handler
    (issue 21) with gevent-websocket not even installed beside it."""
    if cell.handler == DEFAULT_HANDLER:
        return {}
    module = (server.ready.get("handler") or {}).get("module") or cell.handler
    return {
        "gevent-websocket not installed": server.versions.get("gevent-websocket") is None,
        f"{module} imported from the server's env": imported_from_env(server, module),
        f"the handler in use is {cell.handler}": handler_named(cell, server),
    }


def positive_controls(cell, server, page, releases=None, transcripts=(), pins=None):
    """What this server really runs, checked against what the cell claims.

    ``releases`` ({name: version}, pytest --release) are the releases a history
    session put in place of the stack's pins: the server must report those.
    ``pins`` (pytest --pin) are a user stack's own (tests/harness/userstack.py),
    a stack pyproject.toml does not declare: the server must report each.
    Every client must get its websocket (a handler that does not speak RFC 6455,
    e.g. gevent-websocket 0.2, answers no question about lazy layers).
    """
    versions = server.versions
    releases = releases or {}
    gws = versions.get("gevent-websocket") or ""
    release = (releases.get("gevent-websocket") or (pins or {}).get("gevent-websocket")
               or STACKS[cell.stack]["gevent-websocket"]["version"])
    want_gws = build_version(release, cell.fixed)
    releases_reported = {f"{name} release": versions.get(name) == version
                         for name, version in releases.items() if name != "gevent-websocket"}
    pins_reported = {f"{name} pin": versions.get(name) == version
                     for name, version in (pins or {}).items() if name != "gevent-websocket"}
    return {
        **releases_reported,
        **pins_reported,
        "hello_goodbyer": ("Goodbye from the page!" in page) == cell.hello_goodbyer,
        "rum_script": ("NREUM" in page) == (cell.agent and cell.rum),
        **({"gevent-websocket build": gws == want_gws,
            "gevent-websocket imported from the server's env": imported_from_env(
                server, "geventwebsocket")} if cell.handler == DEFAULT_HANDLER
           else handler_controls(cell, server)),
        f"served by the {server.launcher} process": served_by(server),
        "agent loaded": server.ready.get("agent_loaded") == cell.agent,
        "agent active": server.ready.get("agent_active") == cell.agent,
        "websocket handshake": not [e for t in transcripts for e in t.events
                                    if e["event"] == "error" and e.get("stage") == "connect"],
        "no outbound connection": not [e for e in server.events if e["event"] == "outbound"
                                       and e.get("kind") != "udp_route_lookup"],
        **layer_controls(cell, server),
    }


def layer_controls(cell, server):
    """The layer the cell claims is the one set up in this server, pinned, its hook
    installed, and doing its work: it finished the page's plain GET."""
    ready = server.ready
    if cell.layer == NO_LAYER:
        return {"no layer": not ready.get("layer")}
    active = ready.get("layer_active") or {}
    pins, _ = layer_pins(cell.layer, cell.stack)
    version = str(active.get("version"))
    pinned = (any(pin.endswith(f"=={version}") for pin in pins or ())
              or version in (server.versions.get("Werkzeug"),) and not pins)
    page = next((e["rid"] for e in server.events if e["event"] == "request"
                 and e.get("path") == "/"), None)
    return {f"layer {cell.layer} set up": ready.get("layer") == cell.layer
            and active.get("hook_installed") is True,
            f"layer {cell.layer} pinned ({version})": pinned,
            f"layer {cell.layer} finished the page's request": any(
                e["event"] == "layer_finished" and e.get("layer") == cell.layer
                and page is not None and e.get("rid") == page for e in server.events)}


def wait_for_layer(server, layer):
    """Wait (bounded, once) until ``layer`` finished or skipped the page's request and each
    client's; the server's events so far, the ones within the bound.

    Requests are told apart as the criteria do, by the page's path and each client's
    query, read from the events as they arrive: a client's ``request`` line may still be
    on its way from the server when the client itself is done.
    """
    wanted = {"page", *(f"client={c}" for c in clients.CLIENTS)}
    whose = {}  # rid -> "page" or "client=<name>"
    ended = set()

    def done(event):
        if event["event"] == "request":
            key = "page" if event.get("path") == "/" else next(
                (k for k in wanted if k != "page" and k in event.get("query", "")), None)
            if key is not None and key not in whose.values():
                whose[event["rid"]] = key
        elif event["event"] in ("layer_finished", "layer_skipped") \
                and event.get("layer") == layer:
            ended.add(event.get("rid"))
        return set(whose.values()) == wanted and set(whose) <= ended

    if layer is not None:
        try:
            server.wait_for(done, LAYER_BOUND, f"{layer}'s end of the page's and each "
                                               f"client's request")
        except ServerError:  # not finished within the bound: the observation says so
            pass
    return list(server.events)


@pytest.mark.cell
@pytest.mark.parametrize("column", COLUMNS,
                         ids=[session_cell.slug(COLUMN_AXES) for session_cell in
                              cells("today", False, False)])
def test_cell(session, results, column):
    if session.agent is None or session.fixed is None:
        pytest.skip("cells need the session's claim: run through nox, or pass "
                    "--agent/--no-agent and --fixed/--no-fixed")
    run_cell(session, results, session.cell(**column))


def run_cell(session, results, cell):
    """Start the cell's server, run both clients, record, then assert against the model;
    the model's prediction."""
    started = time.monotonic()
    server = Server(session.server_python, agent=cell.agent, rum=cell.rum,
                    hello_goodbyer=cell.hello_goodbyer, log_dir=session.logs, name=cell.slug(),
                    launcher=session.launcher, handler=session.server_handler,
                    layer=cell.layer if cell.layer != NO_LAYER else None,
                    # a layer session's app monkey-patches, as gevent's docs ask: the
                    # layers keep per-request state greenlet-safe only then; off for
                    # the seed's own cells, which keep their meaning
                    monkey_patch=session.layer is not None)
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
        within_bound = wait_for_layer(server, cell.tracked_layer)
    events = server.events
    duration = time.monotonic() - started
    controls = positive_controls(cell, server, page, session.releases, transcripts,
                                 session.pins)
    if session.layer is not None:
        controls["app monkey-patched (a layer session)"] = (
            server.ready.get("monkey_patched") is True)
    # The handler the server says it runs, not the one the session claims (a control).
    facts = StackFacts.from_versions(
        server.versions, (server.ready.get("handler") or {}).get("name", DEFAULT_HANDLER))
    expected = predict(cell, facts)
    observed = [evaluate(cell, t, events, within_bound) for t in transcripts]
    results.add("cells", CellRecord(layer=cell.tracked_layer,
        cell=cell, seed=seed_verdict(cell), verdict=observed[0].verdict, observed=observed,
        expected=expected.as_dict(), facts=facts.__dict__, controls=controls,
        versions=server.versions, page_status=status,
        transcripts=[t.as_dict() for t in transcripts], server_events=events,
        server_ready_after=server.ready_after,
        client_durations={t.client: round(t.duration, 3) for t in transcripts},
        duration=round(duration, 3), launcher=server.launcher,
        phases=Phases.split(server.ready_after, exchanged - started, duration)))

    failed = [name for name, ok in controls.items() if not ok]
    assert not failed, server.explain(
        f"{cell.label()}: positive controls failed: {failed}; versions={server.versions}, "
        f"page excerpt={page[:300]!r}")
    for obs in observed:
        assert agrees(obs, expected.as_dict()), server.explain(
            f"{cell.label()}, {obs.client} client: expected {expected.as_dict()}\n"
            f"  observed {comparable(obs)}\n  evidence {json.dumps(obs.evidence)}")
    return expected
