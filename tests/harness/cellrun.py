"""One cell, run: its server, the page, both real clients at once, the positive controls,
the criteria and the model's prediction, recorded before anything is asserted.

The matrix's cells (tests/matrix/test_cells.py), a layer's (tests/matrix/test_layers.py)
and every session built on them run their cells through ``run_cell``.

Negatives come from the server's events (app/connections.py), not from waiting:

- "the layer never finished": the layer was entered for the request (``layer_entered``,
  from outside its outermost wrapper) and no ``layer_finished`` came before the server's
  ``request_done`` for it (the handler's work for that request has returned); not entered,
  it was "not started" (tests/harness/criteria.py);
- "the server kept TCP open": its ``request_done`` for the websocket's request says the
  connection is kept for another request; the Python client is told so and stops
  waiting (node's ``ws`` half-closes, and the server's answer to that EOF is the
  observation).

REQUEST_DONE_BOUND is a safety net: hitting it fails the cell.  The clients' own bound
(clients.CLIENT_TIMEOUT) still decides where the server reports nothing because its work
for the request has not returned: a layer that reads the upgraded request's body
(sentry-sdk does, at the end of every request) reads the websocket's socket on a vanilla
gevent-websocket and on flask-sock, and that read returns only when the client closes.
The server then sends nothing more and, after a closing handshake, keeps TCP open; the
client's bound ends its wait (its transcript says so) and the layer's end and
``request_done`` follow the client's close.  No event can say so while it lasts: an
event as the read starts comes on the patched build too, whose read returns at once,
and whether the read returns is seen only when it does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness import clients, forked
from tests.harness.cells import DEFAULT_HANDLER, NO_LAYER, Cell, seed_verdict
from tests.harness.controls import SERVER_LIVED, positive_controls
from tests.harness.criteria import Event, evaluate
from tests.harness.model import Prediction, StackFacts, predict
from tests.harness.records import CellRecord, Phases, agrees, comparable
from tests.harness.server import Server, ServerError

# s the server gets, once both clients are done, to report each request done (a safety
# net: their connections are over, so the handler's work has returned or is returning).
# Hitting it fails the cell; it decides no observation.
REQUEST_DONE_BOUND = 10.0
LAYER_ENDS = ("layer_finished", "layer_skipped")
DIED_STDERR = 600  # characters of a dead server's stderr its record keeps: the last words


class CellSession(Protocol):
    """What a cell needs of its pytest session (tests/conftest.py Session)."""

    @property
    def server_python(self) -> str: ...
    @property
    def logs(self) -> Path | None: ...
    @property
    def launcher(self) -> str: ...
    @property
    def server_handler(self) -> str | None: ...
    @property
    def layer(self) -> str | None: ...
    @property
    def releases(self) -> Mapping[str, str]: ...
    @property
    def pins(self) -> Mapping[str, str]: ...


class CellResults(Protocol):
    """Where a cell's record goes (tests/conftest.py Results)."""

    def add(self, kind: str, record: Any) -> None: ...


def wait_for_requests_done(server: Server) -> tuple[list[Event], str | None]:
    """Wait until the server reported the page's request and each client's done
    (app/connections.py ``request_done``); the server's events so far, less any layer end
    that came after its request's ``request_done``, and what was missing if the safety
    net (or the server's exit) ended the wait.

    Requests are told apart as the criteria do, by the page's path and each client's
    query, read from the events as they arrive: a client's ``request`` line may still be
    on its way from the server when the client itself is done.  A layer that has not
    finished a request when the handler's work for it has returned did not finish it with
    the request: what it does later (a garbage-collected fallback, the server's stop) is
    not that request's end.
    """
    wanted = {"page", *(f"client={c}" for c in clients.CLIENTS)}
    whose: dict[Any, str] = {}  # rid -> "page" or "client=<name>"
    done = set()

    def all_done(event: Event) -> bool:
        if event["event"] == "request":
            key = (
                "page"
                if event.get("path") == "/"
                else next((k for k in wanted if k != "page" and k in event.get("query", "")), None)
            )
            if key is not None and key not in whose.values():
                whose[event["rid"]] = key
        elif event["event"] == "request_done":
            done.add(event.get("rid"))
        return set(whose.values()) == wanted and set(whose) <= done

    try:
        server.wait_for(
            all_done, REQUEST_DONE_BOUND, "request_done for the page's and each client's request"
        )
    except ServerError:
        seen = sorted(key for rid, key in whose.items() if rid in done)
        return with_their_requests(server.events), (
            f"expected the server's request_done for {sorted(wanted)} within "
            f"{REQUEST_DONE_BOUND:.0f} s (a safety net, not an observation); seen done: "
            f"{seen or 'none'}"
        )
    return with_their_requests(server.events), None


def with_their_requests(events: list[Event]) -> list[Event]:
    """``events`` less each layer end that came after its request's ``request_done``."""
    over = set()
    kept = []
    for event in events:
        if event["event"] in LAYER_ENDS and event.get("rid") in over:
            continue
        kept.append(event)
        if event["event"] == "request_done":
            over.add(event.get("rid"))
    return kept


def kept_open_notices(server: Server) -> dict[str, threading.Event]:
    """{client: set once the server reported its websocket's request done with the
    connection kept for another request}: after that the server reads an HTTP request
    line, so it closes TCP only once the client does (app/connections.py)."""
    notices = {c: threading.Event() for c in clients.CLIENTS}
    whose: dict[Any, str] = {}  # rid -> client

    def watcher(event: Event) -> None:
        if event["event"] == "request":
            client = next(
                (c for c in clients.CLIENTS if f"client={c}" in event.get("query", "")), None
            )
            if client is not None and client not in whose.values():
                whose[event["rid"]] = client
        elif (
            event["event"] == "request_done"
            and event.get("keep_alive") is True
            and str(event.get("upgrade", "")).lower() == "websocket"
            and event.get("rid") in whose
        ):
            notices[whose[event["rid"]]].set()

    server.watch(watcher)
    return notices


def run_cell(session: CellSession, results: CellResults, cell: Cell) -> Prediction:
    """Start the cell's server, run both clients, record, then assert against the model;
    the model's prediction."""
    started = time.monotonic()
    server = Server(
        session.server_python,
        agent=cell.agent,
        rum=cell.rum,
        hello_goodbyer=cell.hello_goodbyer,
        log_dir=session.logs,
        name=cell.slug(),
        launcher=session.launcher,
        handler=session.server_handler,
        layer=cell.layer if cell.layer != NO_LAYER else None,
        # a layer session's app monkey-patches, as gevent's docs ask: the
        # layers keep per-request state greenlet-safe only then; off for
        # the seed's own cells, which keep their meaning
        monkey_patch=session.layer is not None,
        fork=session.layer is None and session.launcher == "app" and forked.enabled(),
    )
    with server:
        status, page = server.get("/")
        # Both clients at once, each on its own connection (criteria tell their
        # events apart by the request id their query names): a cell waits for
        # one client process start-up, not two (tests/bench: -0.1 s a cell).
        kept_open = kept_open_notices(server)
        with ThreadPoolExecutor(len(clients.CLIENTS)) as pool:
            transcripts = list(
                pool.map(
                    lambda c: clients.run(
                        c, f"{server.ws_url}{cell.route}?client={c}", kept_open=kept_open[c]
                    ),
                    clients.CLIENTS,
                )
            )
        exchanged = time.monotonic()
        with_requests, not_done = wait_for_requests_done(server)
    events = server.events
    ready = server.ready or {}
    duration = time.monotonic() - started
    controls = positive_controls(cell, server, page, session.releases, transcripts, session.pins)
    if session.layer is not None:
        controls["app monkey-patched (a layer session)"] = ready.get("monkey_patched") is True
    # The handler the server says it runs, not the one the session claims (a control).
    facts = StackFacts.from_versions(
        server.versions, (ready.get("handler") or {}).get("name", DEFAULT_HANDLER)
    )
    expected = predict(cell, facts)
    observed = [evaluate(cell, t, events, with_requests) for t in transcripts]
    record = CellRecord(
        layer=cell.tracked_layer,
        cell=cell,
        seed=seed_verdict(cell),
        verdict=observed[0].verdict,
        observed=observed,
        expected=expected.as_dict(),
        facts=facts.__dict__,
        controls=controls,
        versions=server.versions,
        page_status=status,
        transcripts=[t.as_dict() for t in transcripts],
        server_events=events,
        server_ready_after=server.ready_after or 0.0,
        client_durations={t.client: round(t.duration, 3) for t in transcripts},
        duration=round(duration, 3),
        launcher=server.launcher,
        phases=Phases.split(server.ready_after or 0.0, exchanged - started, duration),
        server_died=None
        if server.died is None
        else {"status": server.died, "stderr": server.stderr_text(DIED_STDERR)},
    )
    results.add("cells", record)
    failed = [name for name, ok in controls.items() if not ok]
    if defect := record.died_as_allowed():
        # a race the model allows: what the death cut short is no evidence either way
        disagree = [o.client for o in observed if not agrees(o, expected.as_dict())]
        if not_done or failed != [SERVER_LIVED] or disagree:
            pytest.xfail(
                server.explain(
                    f"{cell.label()}: the server died of a defect the model allows "
                    f"({defect}); cut short: {not_done or ''} controls failed {failed}, "
                    f"clients that disagree {disagree}"
                )
            )
        return expected

    assert not_done is None, server.explain(f"{cell.label()}: {not_done}")
    assert not failed, server.explain(
        f"{cell.label()}: positive controls failed: {failed}; versions={server.versions}, "
        f"page excerpt={page[:300]!r}"
    )
    for obs in observed:
        assert agrees(obs, expected.as_dict()), server.explain(
            f"{cell.label()}, {obs.client} client: expected {expected.as_dict()}\n"
            f"  observed {comparable(obs)}\n  evidence {json.dumps(obs.evidence)}"
        )
    return expected
