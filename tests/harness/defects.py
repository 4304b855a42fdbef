"""The named defects of vanilla gevent-websocket 0.10.1, one sentence each.

Each is the ``defect=`` of a protocol check (tests/matrix/test_protocol.py: the
expected failure on the vanilla build) and what an Autobahn case that is not OK
maps to (tests/harness/conformance.py ``defects()``): one definition for both.
"""

from __future__ import annotations

import signal

# What vanilla 0.10.1 does; the xfail reason on that build.
CLOSE_DROPS_CODE = (
    "WebSocket.close(code, reason) sends no code: the reason's bytes are the "
    "whole payload, so b'bye' reads as close code 25209"
)
CLOSE_TOO_LONG = (
    "WebSocket.close() sends a 200-byte reason whole, without the code: a close "
    "frame over the 125 bytes a control frame may hold"
)
ECHO_REPR = (
    "the echo of a client's close sends repr(bytearray) ('bytearray(b\"...\")') as "
    "its payload: the client's code is lost"
)
ECHO_EMPTY = "the echo of a client's close without a reason is empty: the client's code is lost"
NODE_INVALID = (
    "node ws fails the connection on WebSocket.close(1000, u'bye'): 'invalid status "
    "code 25209' (the code is dropped, 'by' is read as the code)"
)
PYTHON_INVALID = (
    "websocket-client rejects the close frame of WebSocket.close(1000, u'bye'): "
    "'Invalid close opcode 25209' (the code is dropped, 'by' is read as the code)"
)
KEY_500 = (
    "a malformed Sec-WebSocket-Key raises binascii.Error in the handshake: 500 Internal "
    "Server Error instead of 400"
)
KEY_ALPHABET = (
    "a Sec-WebSocket-Key with characters outside the base64 alphabet is accepted "
    "(b64decode drops them): 101 Switching Protocols instead of 400"
)
STR_BODY = (
    "the {status} body is str: gevent raises TypeError after the headers and drops the "
    "connection before the Content-Length bytes"
)
HTTP10 = (
    "an HTTP/1.0 upgrade is answered '402 Bad Request' (402 is Payment Required), and its "
    "str body drops the connection"
)
UNMASKED = (
    "an unmasked client frame is accepted and handed to the application (RFC 6455 5.1: "
    "the server must fail the connection, 1002)"
)
UTF8_NO_CODE = (
    "invalid UTF-8 is detected, but close(1007) drops the code: the server sends an "
    "empty close frame"
)
UTF8_NOT_FAIL_FAST = (
    "invalid UTF-8 inside a text frame is found only once the whole frame has "
    "arrived: the invalid octets get no close frame, the server waits for the rest"
)
BAD_CLOSE_NO_CODE = (
    "a malformed client close is detected, but close(1002) drops the code: the "
    "server sends an empty close frame"
)

INPUT_IS_SOCKET = (
    "after the upgrade wsgi.input is the raw socket (wsgi.input_terminated False): "
    "request.get_data() blocks on it and eats the websocket's frames"
)
# A request layer that never finishes its end-of-request work on vanilla
# gevent-websocket: the layer cells' expected failure (tests/matrix/test_layers.py).
LAYER_NOT_CLOSED = (
    "the handler never calls close() on the application's iterable (PEP 3333): "
    "a layer that ends its request work in close() (elastic-apm's "
    "call_on_close) never sends it"
)
LAYER_NOT_ITERATED = (
    "the handler never iterates the application's result: a layer that "
    "defers the call, or ends its work on exhaustion, never finishes"
)
SERVER_CLOSES_UNREAD = (
    "after its close frame the server closes TCP at once, without reading "
    "the client's close (RFC 6455 5.5.1, 7.1.1)"
)

# -- other handlers: each check they fail, by test name --------------------
# {handler: {check: defect}}; a check is a test's name (``test_x[param]``) or its
# function (``test_x``, every parameter).  A handler's check not listed must pass; one
# listed is a strict expected failure (tests/matrix/test_protocol.py).
# gevent-ws 2.1.0 (gevent_ws/__init__.py)
GWS_NO_CLOSE_FRAME = (
    "gevent-ws sends no close frame when the view returns (only close() or "
    "its answer to the client's close sends one): the client sees the TCP end "
    "(websocket-client 'no close frame', node 1006)"
)
GWS_READER_ABORT = (
    "gevent-ws leaves a greenlet reading each websocket's socket after the view returns; "
    "gevent.pywsgi closes that socket's fd under it, and when a layer still holds the "
    "request libev aborts the process ('I/O watcher with invalid fd found in epoll_ctl')"
)
# how a defect that kills the server shows: {defect: (exit status, its words on stderr)}
DEATHS = {GWS_READER_ABORT: (-signal.SIGABRT, "I/O watcher with invalid fd found in epoll_ctl")}


def died_of(defect: str, status: int | None, stderr: str) -> bool:
    """The process's exit status and last words are that defect's (DEATHS)."""
    sign = DEATHS.get(defect)
    return sign is not None and status == sign[0] and sign[1] in stderr


GWS_CLOSE_NO_REASON = (
    "gevent-ws's WebSocket.close(status) takes no reason: the close frame carries the code alone"
)
GWS_ECHO_1000 = (
    "gevent-ws answers a client's close with 1000 whatever its code (RFC 6455 5.5.1: echo the code)"
)
GWS_BAD_CLOSE_1000 = (
    "gevent-ws answers a malformed client close (code 1005, one byte) with 1000, not 1002"
)
GWS_UNMASKED_1008 = (
    "gevent-ws fails an unmasked client frame with 1008 (policy violation), "
    "not 1002 (protocol error)"
)
GWS_ACCEPTS_ANY_UPGRADE = (
    "gevent-ws checks neither Sec-WebSocket-Key nor -Version nor the HTTP "
    "version: 101 Switching Protocols where 400/426 is due"
)
GWS_NO_KEY_SILENT = (
    "gevent-ws refuses an upgrade without Sec-WebSocket-Key by "
    "start_response('400 Bad Request') alone: nothing is written, the client "
    "waits for a response, and no 'rejected' event is logged"
)
GWS_UTF8_WHOLE_MESSAGE = (
    "gevent-ws decodes UTF-8 only once the whole message has arrived: the "
    "invalid octets get no close frame, the server waits for the rest"
)
# flask-sock 0.7.0 + simple-websocket 1.1.0 (wsproto 1.3.2) on gevent's WSGIHandler
FS_KEEPS_TCP = (
    "flask-sock on gevent never closes the TCP connection after the closing "
    "handshake: simple-websocket works on a dup() of the socket and gevent's "
    "WSGIHandler keeps the connection, reading the client's next bytes as HTTP"
)
FS_ACCEPTS_BAD_UPGRADE = (
    "flask-sock (wsproto) accepts a malformed Sec-WebSocket-Key and an "
    "HTTP/1.0 upgrade: 101 Switching Protocols where 400 is due"
)
FS_REFUSAL_500 = (
    "flask-sock answers an upgrade wsproto refuses (no key, no or another "
    "version) with 500 INTERNAL SERVER ERROR (RemoteProtocolError escapes the "
    "view), not 400/426 with Sec-WebSocket-Version, and logs no 'rejected' event"
)
# Named from Autobahn's cases (no protocol check shows them yet), each by its cause in
# gevent_ws/__init__.py 2.1.0:
GWS_EMPTY_NOT_SENT = (
    "gevent-ws sends nothing for an empty payload (_send_frame loops over "
    "the payload's chunks: none, no frame): an empty message is never echoed "
    "and a ping without payload gets no pong"
)
GWS_RSV_IGNORED = (
    "gevent-ws never checks the RSV bits: a frame with RSV set (no extension "
    "negotiated) is taken as data, not failed with 1002"
)
GWS_CONTROL_FRAMES = (
    "gevent-ws checks neither a control frame's FIN nor answers its bad "
    "length with 1002: a fragmented ping is answered, a 126-byte ping fails "
    "with 1009"
)
GWS_OPCODES = (
    "gevent-ws fails a reserved opcode or a continuation after the final fragment "
    "only after what it already read (NON-STRICT: late, not at once)"
)
FS_FAILS_BEFORE_ECHO = (
    "flask-sock fails the connection on a bad frame (RSV set, a reserved "
    "opcode, a continuation out of place) without echoing the valid "
    "message that arrived just before it (Autobahn: NON-STRICT)"
)
HANDLER_DEFECTS: dict[str, dict[str, str]] = {
    "gevent-ws": {
        "test_handshake_and_exchange": GWS_NO_CLOSE_FRAME,
        "test_server_close_sends_code_and_reason": GWS_CLOSE_NO_REASON,
        "test_server_close_long_reason_is_cut_on_a_character": GWS_CLOSE_NO_REASON,
        "test_client_sees_server_close_code_and_reason": GWS_CLOSE_NO_REASON,
        "test_client_close_is_echoed_with_its_code": GWS_ECHO_1000,
        "test_malformed_client_close_fails_with_1002": GWS_BAD_CLOSE_1000,
        "test_unmasked_frame_fails_the_connection_with_1002": GWS_UNMASKED_1008,
        # the check itself passes: the normal exchange after it ends without a close frame
        "test_invalid_utf8_text_fails_the_connection_with_1007": GWS_NO_CLOSE_FRAME,
        "test_invalid_utf8_fails_the_connection_where_it_arrives": GWS_UTF8_WHOLE_MESSAGE,
        "test_malformed_key_is_400": GWS_ACCEPTS_ANY_UPGRADE,
        "test_http_1_0_upgrade_is_400_bad_request": GWS_ACCEPTS_ANY_UPGRADE,
        "test_refused_upgrade_sends_its_body": GWS_ACCEPTS_ANY_UPGRADE,
        "test_refused_upgrade_sends_its_body[no-key]": GWS_NO_KEY_SILENT,
        "test_server_close_waits_for_the_clients_close": SERVER_CLOSES_UNREAD,
        "test_reading_the_request_body_keeps_the_websocket": INPUT_IS_SOCKET,
    },
    "flask-sock": {
        "test_client_close_is_echoed_with_its_code": FS_KEEPS_TCP,
        "test_malformed_client_close_fails_with_1002": FS_KEEPS_TCP,
        "test_unmasked_frame_fails_the_connection_with_1002": FS_KEEPS_TCP,
        "test_invalid_utf8_text_fails_the_connection_with_1007": FS_KEEPS_TCP,
        "test_invalid_utf8_fails_the_connection_where_it_arrives": FS_KEEPS_TCP,
        "test_malformed_key_is_400": FS_ACCEPTS_BAD_UPGRADE,
        "test_http_1_0_upgrade_is_400_bad_request": FS_ACCEPTS_BAD_UPGRADE,
        "test_refused_upgrade_sends_its_body": FS_REFUSAL_500,
        "test_server_close_waits_for_the_clients_close": FS_KEEPS_TCP,
        "test_reading_the_request_body_keeps_the_websocket": INPUT_IS_SOCKET,
    },
}


def handler_defect(handler: str, test_name: str) -> str | None:
    """The named defect of ``handler`` a protocol check shows, or None (it must pass)."""
    known = HANDLER_DEFECTS.get(handler, {})
    return known.get(test_name) or known.get(test_name.partition("[")[0])


# Autobahn's cases (tests/harness/conformance.py) that another handler does not pass, by
# what is seen: {handler: [(case prefix or "*", behaviour or "*", close or "*", defect)]},
# the first match wins.  A case no rule names is listed in the results without a defect.
HANDLER_CASE_DEFECTS: dict[str, list[tuple[str, str, str, str]]] = {
    "gevent-ws": [
        # a malformed or invalid client close (length 1, reason too long, bad UTF-8, an
        # invalid code) answered with 1000 (the protocol check's code-1005 and one-byte)
        ("7", "*", "WRONG CODE", GWS_BAD_CLOSE_1000),
        ("6.4", "NON-STRICT", "*", GWS_UTF8_WHOLE_MESSAGE),
        # zero-length text/binary messages (1.1.1, 1.2.1, 6.1.1, 6.1.2, 9.7.1, 9.8.1) and
        # the ping without payload (2.1)
        *(
            (case, "FAILED", "*", GWS_EMPTY_NOT_SENT)
            for case in ("1.1.1", "1.2.1", "2.1", "6.1.1", "6.1.2", "9.7.1", "9.8.1")
        ),
        ("3", "*", "*", GWS_RSV_IGNORED),
        ("2.5", "*", "WRONG CODE", GWS_CONTROL_FRAMES),
        ("5.1", "FAILED", "*", GWS_CONTROL_FRAMES),
        ("4", "NON-STRICT", "*", GWS_OPCODES),
        ("5.15", "NON-STRICT", "*", GWS_OPCODES),
    ],
    "flask-sock": [
        *((section, "NON-STRICT", "*", FS_FAILS_BEFORE_ECHO) for section in ("3", "4", "5")),
        # every case's close: the server never drops TCP, wstest waits and drops it
        ("*", "*", "UNCLEAN", FS_KEEPS_TCP),
        ("*", "*", "FAILED BY CLIENT", FS_KEEPS_TCP),
    ],
}


def handler_case_defect(handler: str, case: str, result: dict[str, str]) -> str | None:
    """The named defect an Autobahn case of ``handler`` shows (None: not named)."""
    for prefix, behavior, close, defect in HANDLER_CASE_DEFECTS.get(handler, []):
        if (
            (prefix in ("*", case) or case.startswith(prefix + "."))
            and behavior in ("*", result["behavior"])
            and close in ("*", result["behaviorClose"])
        ):
            return defect
    return None
