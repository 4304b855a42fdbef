"""RFC 6455 and bad input: what gevent-websocket 0.10.1 gets wrong, on both builds.

Each check runs against today's stack through the real server process
(``python -m app``), speaking websocket byte by byte (tests.harness.frames),
or through the real clients (websocket-client and node ``ws``).  On the
patched build every check must pass.  On the vanilla build a check marked with a
defect is an expected failure naming that defect (strict: if vanilla starts
passing, the suite says so).  Each check is recorded in the session's results
("protocol") by tests/conftest.py.

Two invariants hold on both builds and are not covered by the expected failure:
after every bad input the same server completes a normal exchange, and every
upgrade the handler refuses is logged as one ``rejected`` event.
"""

from __future__ import annotations

import http
import json
import re
import subprocess

import pytest

from tests.harness import clients, forked, frames
from tests.harness.cellrun import kept_open_notices
from tests.harness.cells import DEFAULT_HANDLER, build_name, is_patched
from tests.harness.defects import (
    BAD_CLOSE_NO_CODE,
    CLOSE_DROPS_CODE,
    CLOSE_TOO_LONG,
    ECHO_EMPTY,
    ECHO_REPR,
    HTTP10,
    INPUT_IS_SOCKET,
    KEY_500,
    KEY_ALPHABET,
    NODE_INVALID,
    PYTHON_INVALID,
    SERVER_CLOSES_UNREAD,
    STR_BODY,
    UNMASKED,
    UTF8_NO_CODE,
    UTF8_NOT_FAIL_FAST,
    handler_defect,
)
from tests.harness.frames import (
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_frame,
    close_payload,
    upgrade_request,
)
from tests.harness.server import Server, ServerError

VIEW_MESSAGE = "Hello from view!"
EVENT_TIMEOUT = 5.0  # s to wait for a server event that must follow what we sent
LONG_REASON = "\u00e9" * 100  # app.web.CLOSE_REASONS["close-long"]: 200 bytes of UTF-8
# s a client may take to answer the server's close frame; the server waits longer (patch 0010).
CLOSE_HOLD = 0.5

protocol = pytest.mark.protocol
BUILDS = (build_name(False), build_name(True))  # gevent-websocket's; else a handler's name


class InvariantBroken(Exception):
    """Not an AssertionError, so no expected failure covers it: fails on both arms."""


# -- build, server, and the check collector ------------------------------------


@pytest.fixture(scope="module")
def build(session):
    """'patched' or 'vanilla': the session's claim, else what the server's env has installed;
    in a handler session, the handler's name."""
    if session.stack != "today":
        pytest.skip("the protocol checks cover today's stack (gevent-websocket 0.10.1)")
    if session.handler != DEFAULT_HANDLER:
        return session.handler
    if session.fixed is not None:
        return build_name(session.fixed)
    code = "from importlib.metadata import version; print(version('gevent-websocket'))"
    out = subprocess.run(
        [session.server_python, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    return build_name(is_patched(out))


@pytest.fixture(autouse=True)
def _expected_defect(request, build):
    """On the vanilla build a check's defect is an expected failure; the record needs the build.

    Another handler's known defects are data (tests/harness/defects.py HANDLER_DEFECTS):
    there an expected failure may break an invariant too (no close frame after a normal
    exchange fails every check), so any exception counts.
    """
    request.node.user_properties.append(("build", build))
    if build not in BUILDS:
        defect = handler_defect(build, request.node.name)
        request.node.user_properties.append(("defect", defect))
        if defect:
            request.applymarker(pytest.mark.xfail(reason=defect, strict=True))
        return
    marker = request.node.get_closest_marker("protocol")
    defect = marker.kwargs.get("defect") if marker else None
    if defect and build == build_name(False):
        request.applymarker(pytest.mark.xfail(reason=defect, strict=True, raises=AssertionError))


@pytest.fixture
def server(request, session, build):
    name = "protocol-" + re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    with Server(
        session.server_python,
        log_dir=session.logs,
        name=name,
        handler=session.server_handler,
        fork=forked.enabled(),
    ) as running:
        if build not in BUILDS:
            runs = (running.ready.get("handler") or {}).get("name")
            if runs != build:
                raise InvariantBroken(
                    running.explain(
                        f"the session claims the handler {build}, the server runs {runs}"
                    )
                )
            yield running
            return
        gws = running.versions.get("gevent-websocket") or ""
        if build_name(is_patched(gws)) != build:
            raise InvariantBroken(
                running.explain(
                    f"the session claims the {build} build, the server runs gevent-websocket {gws}"
                )
            )
        yield running


class Check:
    """Expected/seen pairs: one failure at the end lists every difference."""

    def __init__(self, request, server):
        self.node, self.server = request.node, server
        self.seen, self.problems, self.broken = [], [], []

    def expect(self, what, ok, expected, seen):
        self.seen.append(f"{what}: {seen}")
        if not ok:
            self.problems.append(f"{what}: expected {expected}; seen {seen}")
        return ok

    def equal(self, what, expected, seen):
        return self.expect(what, seen == expected, repr(expected), repr(seen))

    def invariant(self, what, ok, expected, seen):
        self.seen.append(f"{what}: {seen}")
        if not ok:
            self.broken.append(f"{what}: expected {expected}; seen {seen}")
        return ok

    def verify(self):
        evidence = "; ".join(self.broken + self.problems or self.seen)
        self.node.user_properties.append(("evidence", evidence[:600]))
        if self.broken:
            raise InvariantBroken(
                self.server.explain(
                    "\n  ".join(["invariant broken (expected/seen):", *self.broken, *self.problems])
                )
            )
        assert not self.problems, self.server.explain(
            "\n  ".join(["expected/seen:", *self.problems])
        )


@pytest.fixture
def check(request, server):
    return Check(request, server)


# -- helpers ------------------------------------------------------------------


def next_event(server, predicate, what, timeout=EVENT_TIMEOUT):
    """The server's first event that matches, or None once ``timeout`` (a bound) is over:
    the check that reads it then says what it expected."""
    try:
        return server.wait_for(predicate, timeout, what)
    except ServerError:
        return None


def request_done(server, rid):
    """The server's request_done for ``rid`` (app/connections.py), or None."""
    return next_event(
        server,
        lambda e: e["event"] == "request_done" and e.get("rid") == rid,
        f"request_done for rid {rid}",
    )


def request_id(server, query):
    """The rid app.middleware gave the request with this query string."""
    event = next_event(
        server,
        lambda e: e["event"] == "request" and e.get("query") == query,
        f"a 'request' event with query {query!r}",
    )
    return event["rid"] if event else None


def answer_event(server, rid):
    """view_received (the app got the client's answer) or view_received_missing; None if
    the request was done without either (the view raised)."""
    if rid is None:
        return None
    answers = ("view_received", "view_received_missing")
    next_event(
        server,
        lambda e: e.get("rid") == rid and e["event"] in (*answers, "request_done"),
        f"the view's answer event for rid {rid}",
        EVENT_TIMEOUT + 10.0,
    )
    return next((e for e in server.events if e.get("rid") == rid and e["event"] in answers), None)


def open_websocket(server, path, query):
    """Handshake on a raw socket; returns (connection, response, the view's first frame)."""
    conn = frames.Connection(server.ready["port"])
    conn.send(upgrade_request(f"{path}?{query}"))
    response = conn.read_response()
    first = conn.read_frame() if response.code == 101 else None
    return conn, response, first


def keeps_serving(check, server, label):
    """Invariant: after the bad input the same server completes a normal exchange."""
    query = f"after={label}"
    answer = f"still serving after {label}"
    conn, response, first = open_websocket(server, "/view", query)
    with conn:
        if not check.invariant(
            "then a normal exchange: handshake",
            response.code == 101,
            "101 Switching Protocols",
            str(response),
        ):
            return
        check.invariant(
            "then a normal exchange: the view's message",
            first is not None and first.payload == VIEW_MESSAGE.encode(),
            repr(VIEW_MESSAGE),
            str(first) if first else conn.ended,
        )
        conn.send(build_frame(OP_TEXT, answer.encode()))
        event = answer_event(server, request_id(server, query))
        check.invariant(
            "then a normal exchange: the server got the answer",
            event is not None and event["event"] == "view_received" and event.get("data") == answer,
            f"view_received {answer!r}",
            json.dumps(event) if event else "no event",
        )
        closing = conn.read_frame()
        check.invariant(
            "then a normal exchange: a valid close frame",
            closing is not None and closing.opcode == OP_CLOSE and closing.close().valid,
            "a valid close frame",
            str(closing) if closing else conn.ended,
        )


def logged_rejection(check, server, query):
    """Invariant: one 'rejected' event per refused upgrade (app.__main__.logging_rejections).
    It comes while the server handles the request: once the request is done, none is
    still on its way."""
    next_event(
        server,
        lambda e: e["event"] in ("rejected", "request_done") and e.get("query") == query,
        f"a 'rejected' or 'request_done' event with query {query!r}",
    )
    seen = [e for e in server.events if e["event"] == "rejected" and e.get("query") == query]
    check.invariant(
        "the server logged the rejection", len(seen) == 1, "one 'rejected' event", json.dumps(seen)
    )
    return seen[0] if seen else None


def connection_end(server, conn, query):
    """How the server ends the TCP connection of the request with ``query`` once its work
    for it is over: "EOF" or "reset", else why it keeps it.  Its ``request_done``
    (app/connections.py) says whether it reads another request on the connection: then
    it keeps it, and no read has to wait out its bound to show that."""
    rid = request_id(server, query)
    done = request_done(server, rid)
    if done is None:
        return f"open: no request_done for rid {rid} within {EVENT_TIMEOUT:.0f} s (bound)"
    if done.get("keep_alive"):
        return "kept: request_done says keep_alive, the server reads another request on it"
    return conn.read_to_end()


def expect_close_code(check, server, conn, query, code):
    """The server's next frame is a valid close frame with ``code``; then it ends the TCP."""
    frame = conn.read_frame()
    if not check.expect(
        "close frame",
        frame is not None and frame.opcode == OP_CLOSE,
        "a close frame",
        str(frame) if frame else f"no frame ({conn.ended})",
    ):
        return None
    close = frame.close()
    check.expect("close code", close.code == code and close.valid, f"code {code}", str(close))
    ended = connection_end(server, conn, query)
    check.expect(
        "connection ends",
        ended in ("EOF", "reset"),
        "the server closes the TCP connection",
        ended,
    )
    return close


def exchange_then_close_frame(check, server, path, query):
    """Normal exchange on ``path``; returns the close frame the server ends with (or None)."""
    conn, response, first = open_websocket(server, path, query)
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        check.invariant(
            "the view's message",
            first is not None and first.payload == VIEW_MESSAGE.encode(),
            repr(VIEW_MESSAGE),
            str(first) if first else conn.ended,
        )
        conn.send(build_frame(OP_TEXT, b"hi"))
        frame = conn.read_frame()
        if frame is not None and frame.opcode == OP_CLOSE:
            conn.send(build_frame(OP_CLOSE, frame.payload[:2]))
        return frame, conn.ended


# -- controls: pass on both arms -----------------------------------------------


@protocol
def test_handshake_and_exchange(check, server):
    """Control: a by-the-book handshake, one exchange and the server's close frame."""
    conn, response, first = open_websocket(server, "/view", "raw=control")
    with conn:
        check.equal("status", 101, response.code)
        check.equal(
            "Sec-WebSocket-Accept",
            frames.accept_for(frames.SAMPLE_KEY),
            response.headers.get("sec-websocket-accept"),
        )
        check.expect(
            "first frame",
            first is not None
            and first.opcode == OP_TEXT
            and first.fin
            and not first.masked
            and first.payload == VIEW_MESSAGE.encode(),
            f"an unmasked final text frame {VIEW_MESSAGE!r}",
            str(first),
        )
        conn.send(build_frame(OP_TEXT, b"answer"))
        closing = conn.read_frame()
        check.expect(
            "server's close",
            closing is not None and closing.opcode == OP_CLOSE and closing.close().valid,
            "a valid close frame",
            str(closing) if closing else conn.ended,
        )
    event = answer_event(server, request_id(server, "raw=control"))
    check.expect(
        "server got",
        event is not None and event.get("data") == "answer",
        "view_received 'answer'",
        json.dumps(event),
    )
    check.verify()


@protocol
def test_ping_is_answered_with_pong(check, server):
    """Control: a ping mid-exchange gets a pong with the same payload (RFC 6455 5.5.3)."""
    conn, response, first = open_websocket(server, "/view", "raw=ping")
    with conn:
        check.equal("status", 101, response.code)
        conn.send(build_frame(OP_PING, b"are you there"))
        pong = conn.read_frame()
        check.expect(
            "pong",
            pong is not None and pong.opcode == OP_PONG and pong.payload == b"are you there",
            "pong b'are you there'",
            str(pong) if pong else conn.ended,
        )
        conn.send(build_frame(OP_TEXT, b"answer"))
    event = answer_event(server, request_id(server, "raw=ping"))
    check.expect(
        "server got",
        event is not None and event.get("data") == "answer",
        "view_received 'answer'",
        json.dumps(event),
    )
    check.verify()


# -- close frames ----------------------------------------------------------------


@protocol(defect=CLOSE_DROPS_CODE)
def test_server_close_sends_code_and_reason(check, server):
    """ws.close(1000, u"bye") sends b"\\x03\\xe8bye" (RFC 6455 5.5.1)."""
    frame, ended = exchange_then_close_frame(check, server, "/raw/close", "raw=close")
    close = frame.close() if frame is not None and frame.opcode == OP_CLOSE else None
    check.expect(
        "close frame",
        close is not None and close.valid and close.code == 1000 and close.reason == "bye",
        "close code 1000 reason 'bye'",
        str(frame) if frame else ended,
    )
    check.verify()


@protocol(defect=CLOSE_TOO_LONG)
def test_server_close_long_reason_is_cut_on_a_character(check, server):
    """A 200-byte reason is cut to fit 125 bytes, between characters (RFC 6455 5.5, 5.5.1)."""
    frame, ended = exchange_then_close_frame(check, server, "/raw/close-long", "raw=close-long")
    close = frame.close() if frame is not None and frame.opcode == OP_CLOSE else None
    if check.expect(
        "close frame", close is not None, "a close frame", str(frame) if frame else ended
    ):
        check.expect("payload", close.length <= 125, "at most 125 bytes", f"{close.length} bytes")
        check.expect("code", close.code == 1000 and close.valid, "code 1000", str(close))
        check.expect(
            "reason",
            close.reason is not None
            and close.reason != ""
            and LONG_REASON.startswith(close.reason),
            "a non-empty prefix of the reason, cut between characters",
            repr(frame.payload[2:20]) + "...",
        )
    check.verify()


@pytest.mark.parametrize(
    "client",
    [
        pytest.param("python", marks=protocol(defect=PYTHON_INVALID)),
        pytest.param("node", marks=protocol(defect=NODE_INVALID)),
    ],
)
def test_client_sees_server_close_code_and_reason(check, server, client):
    """The real clients end cleanly on the server's close(1000, u"bye")."""
    # told when the server keeps TCP after the close (its request_done), as a cell's are
    kept_open = kept_open_notices(server)[client]
    transcript = clients.run(
        client, f"{server.ws_url}/raw/close?client={client}", kept_open=kept_open
    )
    close = transcript.close or {}
    check.equal("received", [VIEW_MESSAGE], transcript.received)
    check.expect(
        f"{client} close",
        close.get("code") == 1000
        and close.get("reason") == "bye"
        and close.get("valid") is True
        and "error" not in close,
        "code 1000, reason 'bye', valid, no error",
        json.dumps(close or transcript.events[-1:] or transcript.stderr[-300:]),
    )
    check.equal("exit status", 0, transcript.returncode)
    check.verify()


@protocol(defect=SERVER_CLOSES_UNREAD)
def test_server_close_waits_for_the_clients_close(check, server):
    """RFC 6455 5.5.1/7.1.1: after sending its close frame the server reads until the client's
    close, then closes TCP first, with a FIN: no RST for a close frame left unread."""
    conn, response, first = open_websocket(server, "/raw/close", "raw=close-handshake")
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        conn.send(build_frame(OP_TEXT, b"hi"))
        frame = conn.read_frame()
        if check.expect(
            "server's close",
            frame is not None and frame.opcode == OP_CLOSE,
            "a close frame",
            str(frame) if frame else conn.ended,
        ):
            check.expect(
                "before the client's close",
                conn.stays_open(CLOSE_HOLD),
                f"the TCP connection stays open for the {CLOSE_HOLD} s the client holds its close",
                f"ended ({conn.ended})",
            )
            conn.send(build_frame(OP_CLOSE, frame.payload[:2]))
            ended = connection_end(server, conn, "raw=close-handshake")
            check.expect(
                "after the client's close",
                ended == "EOF",
                "the server reads it and closes TCP with a FIN (EOF, not reset)",
                ended,
            )
    check.verify()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(1001, b"going away", id="1001-with-reason", marks=protocol(defect=ECHO_REPR)),
        pytest.param(4000, b"", id="4000-no-reason", marks=protocol(defect=ECHO_EMPTY)),
    ],
)
def test_client_close_is_echoed_with_its_code(check, server, code, reason):
    """The server answers a client's close with the same code (RFC 6455 5.5.1)."""
    query = f"echo={code}"
    conn, response, first = open_websocket(server, "/view", query)
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        conn.send(build_frame(OP_CLOSE, close_payload(code, reason)))
        close = expect_close_code(check, server, conn, query, code)
        if close is not None and reason:
            check.equal("echoed reason", reason.decode(), close.reason)
    check.verify()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(close_payload(1005), id="code-1005", marks=protocol(defect=BAD_CLOSE_NO_CODE)),
        pytest.param(b"\x03", id="one-byte", marks=protocol(defect=BAD_CLOSE_NO_CODE)),
    ],
)
def test_malformed_client_close_fails_with_1002(check, server, payload, request):
    """A close with a code that must not be sent, or a 1-byte body, is a protocol error."""
    query = "bad-close=" + request.node.callspec.id
    conn, response, first = open_websocket(server, "/view", query)
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        conn.send(build_frame(OP_CLOSE, payload))
        expect_close_code(check, server, conn, query, 1002)
    keeps_serving(check, server, query)
    check.verify()


@protocol(defect=INPUT_IS_SOCKET)
def test_reading_the_request_body_keeps_the_websocket(check, server):
    """PEP 3333: the upgrade GET has no body, so reading it (request.get_data(), as sentry-sdk's
    Flask integration does at the end of a request) returns b"" and leaves the frames alone.

    The client's answer is sent right after the handshake and the client then half-closes:
    a body read that takes the socket returns at once with the frame (it reads to EOF),
    so the view goes on either way and nothing waits out a bound."""
    query = "raw=read-input"
    with frames.Connection(server.ready["port"]) as conn:
        conn.send(upgrade_request(f"/raw/read-input?{query}"))
        response = conn.read_response()
        check.invariant("handshake", response.code == 101, "101", str(response))
        conn.send(build_frame(OP_TEXT, b"answer"))
        conn.end_writes()
        first = conn.read_frame()
        check.expect(
            "the view's message",
            first is not None and first.payload == VIEW_MESSAGE.encode(),
            repr(VIEW_MESSAGE),
            str(first) if first else conn.ended,
        )
        rid = request_id(server, query)
        event = answer_event(server, rid)
        check.expect(
            "server got",
            event is not None and event.get("data") == "answer",
            "view_received 'answer'",
            json.dumps(event),
        )
        closing = conn.read_frame()
        check.expect(
            "server's close",
            closing is not None and closing.opcode == OP_CLOSE and closing.close().valid,
            "a valid close frame",
            str(closing) if closing else conn.ended,
        )
    request_done(server, rid)  # every body read of the request is reported by then
    reads = [
        (e.get("when"), e.get("length"))
        for e in server.events
        if e["event"] == "input_read" and e.get("rid") == rid
    ]
    check.equal("request body reads (when, bytes)", [("before", 0), ("after", 0)], reads)
    keeps_serving(check, server, "read-input")
    check.verify()


# -- frames the server must refuse -----------------------------------------------


@protocol(defect=UNMASKED)
def test_unmasked_frame_fails_the_connection_with_1002(check, server):
    """RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that is not
    masked" (with 1002, 7.4.1), and the application never sees the data."""
    conn, response, first = open_websocket(server, "/view", "unmasked=1")
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        conn.send(build_frame(OP_TEXT, b"unmasked answer", mask=False))
        expect_close_code(check, server, conn, "unmasked=1", 1002)
    event = answer_event(server, request_id(server, "unmasked=1"))
    check.expect(
        "application",
        event is not None and event["event"] == "view_received_missing",
        "no message for the view",
        json.dumps(event),
    )
    keeps_serving(check, server, "unmasked")
    check.verify()


@pytest.mark.parametrize(
    "message",
    [
        pytest.param([(OP_TEXT, True, b"\xff\xfe")], id="invalid-bytes"),
        pytest.param([(OP_TEXT, True, b"caf\xc3")], id="truncated-at-the-end"),
        pytest.param([(OP_TEXT, True, b"\xed\xa0\x80")], id="surrogate"),
        pytest.param(
            [(OP_TEXT, False, b"caf\xc3"), (OP_CONTINUATION, True, b"A")], id="split-across-frames"
        ),
    ],
)
@protocol(defect=UTF8_NO_CODE)
def test_invalid_utf8_text_fails_the_connection_with_1007(check, server, message, request):
    """RFC 6455 8.1: text that is not valid UTF-8 fails the connection, 7.4.1: with 1007."""
    fails_with_1007(
        check,
        server,
        "utf8=" + request.node.callspec.id,
        [build_frame(opcode, data, fin=fin) for opcode, fin, data in message],
    )


def fails_with_1007(check, server, query, parts, then_end=False):
    """After the handshake the client sends ``parts`` (bytes) and nothing more: the server
    must fail the connection with 1007, and the view must get no message.  ``then_end``:
    the client half-closes after them, so the server knows no more is coming."""
    conn, response, first = open_websocket(server, "/view", query)
    with conn:
        check.invariant("handshake", response.code == 101, "101", str(response))
        for part in parts:
            conn.send(part)
        if then_end:
            conn.end_writes()
        expect_close_code(check, server, conn, query, 1007)
    event = answer_event(server, request_id(server, query))
    check.expect(
        "application",
        event is not None and event["event"] == "view_received_missing",
        "no message for the view",
        json.dumps(event),
    )
    keeps_serving(check, server, query)
    check.verify()


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param(
            [build_frame(OP_TEXT, b"caf\xc3\xa9 \xf4\x90\x80\x80 edited!")[: 2 + 4 + 8]],
            id="inside-a-frame",
            marks=protocol(defect=UTF8_NOT_FAIL_FAST),
        ),
        pytest.param(
            [
                build_frame(OP_TEXT, b"caf\xc3\xa9", fin=False),
                build_frame(OP_CONTINUATION, b" \xf4\x90\x80\x80", fin=False),
            ],
            id="in-a-fragment",
            marks=protocol(defect=UTF8_NO_CODE),
        ),
    ],
)
def test_invalid_utf8_fails_the_connection_where_it_arrives(check, server, parts, request):
    """RFC 6455 8.1 (Autobahn 6.4.x): the connection fails at the part of a text message
    that holds invalid UTF-8 (here 0x110000, out of range), not once the message is complete:
    the rest of the frame, or the final fragment, is never sent.

    The client half-closes after that part: a server that validates as the octets arrive
    has its 1007 on the way before it reads the EOF behind them, and a server that waits
    for the rest of the message sees only the EOF, at once (no read waits out its bound).
    A server that validated the incomplete message only on that EOF would pass as well;
    none of those checked does."""
    fails_with_1007(check, server, "utf8-fast=" + request.node.callspec.id, parts, then_end=True)


# -- handshakes the server must refuse ----------------------------------------------


def refused_handshake(check, server, query, request_bytes, code, version_header=False):
    """A refused upgrade: ``code`` with its own reason phrase and a body that matches its
    Content-Length; logged once; and the server keeps serving."""
    with frames.Connection(server.ready["port"]) as conn:
        conn.send(request_bytes)
        response = conn.read_response()
    phrase = http.HTTPStatus(code).phrase
    check.expect(
        "status line",
        response.code == code and response.reason == phrase,
        f"'{code} {phrase}'",
        repr(response.status_line) if response.status_line else f"no response ({response.ended})",
    )
    check.expect(
        "body",
        response.complete and response.body.strip() != b"",
        "a non-empty body of exactly Content-Length bytes",
        str(response),
    )
    if version_header:
        check.expect(
            "Sec-WebSocket-Version",
            "13" in response.headers.get("sec-websocket-version", ""),
            "the supported versions (13)",
            repr(response.headers.get("sec-websocket-version")),
        )
    if response.code != 101:  # an upgrade the server accepted was not refused: nothing to log
        logged_rejection(check, server, query)
    keeps_serving(check, server, query)
    check.verify()


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(
            "dGhlIHNhbXBsZSBub25jZQ", id="bad-base64-padding", marks=protocol(defect=KEY_500)
        ),
        pytest.param(
            "dGhlIHNhbXBsZSBub25jZQ=\u00e9", id="not-ascii", marks=protocol(defect=KEY_500)
        ),
        pytest.param(
            "dGhlIHNhbXBs!!ZSBub25jZQ==",
            id="not-base64-alphabet",
            marks=protocol(defect=KEY_ALPHABET),
        ),
        pytest.param(
            "eHh4eHh4eHh4eHh4eHh4",
            id="15-bytes",
            marks=protocol(defect=STR_BODY.format(status="400")),
        ),
    ],
)
def test_malformed_key_is_400(check, server, key, request):
    """RFC 6455 4.2.1: the key must be 16 bytes, base64-encoded; otherwise 400, never 500."""
    query = "key=" + request.node.callspec.id
    refused_handshake(check, server, query, upgrade_request(f"/view?{query}", key=key), 400)


@protocol(defect=HTTP10)
def test_http_1_0_upgrade_is_400_bad_request(check, server):
    """RFC 6455 4.1/4.2.1: an upgrade needs HTTP/1.1 or later; the answer is 400 Bad Request."""
    query = "http=1.0"
    refused_handshake(check, server, query, upgrade_request(f"/view?{query}", http="HTTP/1.0"), 400)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param(
            {"version": None},
            426,
            id="no-version",
            marks=protocol(defect=STR_BODY.format(status="426")),
        ),
        pytest.param(
            {"version": "12"},
            400,
            id="unsupported-version",
            marks=protocol(defect=STR_BODY.format(status="400")),
        ),
        pytest.param(
            {"key": None}, 400, id="no-key", marks=protocol(defect=STR_BODY.format(status="400"))
        ),
    ],
)
def test_refused_upgrade_sends_its_body(check, server, headers, code, request):
    """RFC 6455 4.2.2/4.4: 400/426 with Sec-WebSocket-Version where it applies, and a body
    whose length is the Content-Length (RFC 9112 6.3)."""
    query = "refused=" + request.node.callspec.id
    refused_handshake(
        check,
        server,
        query,
        upgrade_request(f"/view?{query}", **headers),
        code,
        version_header="version" in headers,
    )
