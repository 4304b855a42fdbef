"""The seed's success definition, evaluated from evidence.

Seed: '+' iff the client logs "Hello from view!" and the server logs the
client's answer from the view; in streaming cells also "Hello from iterator!"
and the answer inside response_iter; in HelloGoodbyer cells the server logs
"changing hellos to goodbyes".  Added beside the verdict, not in it: did the
server call close() on the iterable (PEP 3333), and did the websocket end
with a valid close frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .records import NOT_STARTED, Finished, Observation

if TYPE_CHECKING:
    from .cells import Cell
    from .clients import Transcript

Event = dict[str, Any]  # one JSON line of the server's event log

VIEW_MESSAGE = "Hello from view!"
# RFC 6455 7.1.5/7.4.1: the code a client reports when the connection ended without a
# close frame; it must never be sent in one.  node's `ws` reports it with valid: true
# (app/websocket_connect.js logs every 'close' event so): it is not a close frame.
ABNORMAL_CLOSURE = 1006
ITERATOR_MESSAGE = "Hello from iterator!"


def request_id(events: Sequence[Event], client: str) -> int | None:
    """The server's id for the connection the given client opened."""
    for event in events:
        if event["event"] == "request" and f"client={client}" in event.get("query", ""):
            return cast(int, event["rid"])  # the server logs each request's id as an int
    return None


def _exchange(
    transcript: Transcript, server_events: Sequence[Event], message: str, event_name: str
) -> tuple[bool, dict[str, Any]]:
    """The client got `message`, and the server recorded the client's answer to it."""
    received = message in transcript.received
    answer = None
    if received:
        index = transcript.received.index(message)
        answer = transcript.sent[index] if index < len(transcript.sent) else None
    logged = [e for e in server_events if e["event"] == event_name]
    ok = received and answer is not None and any(e.get("data") == answer for e in logged)
    return ok, {
        "client_received": received,
        "client_answer": answer,
        "server_logged": [e.get("data") for e in logged],
    }


def layer_finished(
    layer: str | None,
    rid: int | None,
    events: Sequence[Event],
) -> tuple[Finished, dict[str, Any]]:
    """Did ``layer`` finish its work for request ``rid`` in ``events``?  None: no layer,
    or the layer had none for that request (``layer_skipped``); NOT_STARTED: the server's
    call never reached the layer (no ``layer_entered``, app/layers/__init__.py), so it
    cannot have left work unfinished.  An end that is the layer's own fallback
    (``fallback``: the agent's garbage-collected transaction) does not count: its timing
    is the collector's, not the request's."""
    if layer is None:
        return None, {}
    mine = [
        e
        for e in events
        if e.get("layer") == layer
        and rid is not None
        and e.get("rid") == rid
        and e["event"] in ("layer_entered", "layer_finished", "layer_skipped")
    ]
    evidence = {"layer": layer, "events": mine}
    if any(e["event"] == "layer_skipped" for e in mine):
        return None, evidence
    if any(e["event"] == "layer_finished" and not e.get("fallback") for e in mine):
        return True, evidence
    if not any(e["event"] == "layer_entered" for e in mine):
        return NOT_STARTED, evidence
    return False, evidence


def tcp_close(transcript: Transcript) -> tuple[bool, float | None, Event | None]:
    """(the server closed TCP first after the handshake, seconds it took, the event)."""
    event = next((e for e in transcript.events if e["event"] == "tcp_closed"), None)
    close = transcript.close
    # node's `ws` reports a connection that ended without a close frame as a close (1006)
    # and so a "handshake": there was none to close TCP after
    abnormal = bool(close and close.get("code") == ABNORMAL_CLOSURE)
    by_server = bool(
        event
        and event.get("by") == "server"
        and event.get("handshake", True)
        and not abnormal
        and event.get("after_handshake") is not None
    )
    after = event.get("after_handshake") if event is not None and by_server else None
    return by_server, after, event


def evaluate(
    cell: Cell,
    transcript: Transcript,
    events: Sequence[Event],
    with_requests: Sequence[Event] | None = None,
) -> Observation:
    """``with_requests``: the server's events less each layer end that came after its
    request's ``request_done`` (tests/harness/cellrun.py); default ``events``."""
    rid = request_id(events, transcript.client)
    mine = [e for e in events if rid is not None and e.get("rid") == rid]
    view, view_ev = _exchange(transcript, mine, VIEW_MESSAGE, "view_received")
    iterator = middleware = None
    evidence: dict[str, Any] = {"view": view_ev}
    if cell.streaming:
        iterator, evidence["iterator"] = _exchange(
            transcript, mine, ITERATOR_MESSAGE, "iterator_received"
        )
    if cell.hello_goodbyer:
        said = [e["message"] for e in mine if e["event"] == "hellos_to_goodbyes"]
        middleware = bool(said)
        evidence["middleware"] = {"server_logged": said}
    closes = [e["count"] for e in mine if e["event"] == "iterable_closed"]
    close = transcript.close
    evidence["close"] = {
        "iterable_close_calls": len(closes),
        "client_close": close,
        "client_returncode": transcript.returncode,
    }
    ok = view and iterator is not False and middleware is not False
    finished, evidence["layer"] = layer_finished(
        cell.tracked_layer, rid, events if with_requests is None else with_requests
    )
    closed_tcp, after, evidence["tcp_closed"] = tcp_close(transcript)
    return Observation(
        client=transcript.client,
        rid=rid,
        view=view,
        iterator=iterator,
        middleware=middleware,
        verdict="+" if ok else "-",
        iterable_closed=len(closes) == 1,
        valid_close_frame=bool(
            close and close.get("valid") and close.get("code") != ABNORMAL_CLOSURE
        ),
        evidence=evidence,
        layer_finished=finished,
        server_closed_tcp=closed_tcp,
        tcp_close_after=after,
    )
