"""``python -m app.client URL``: the Python twin of the seed's node client.

Logs every message the server sends, answers each one, and exits when the
server closes.  Output is one JSON object per line (open, received, sent,
closed, tcp_closed, error) so that a harness and a person read the same
transcript.

The websocket ends as RFC 6455 7.1.1 asks of a client and as browsers do it:
after the closing handshake the client waits, bounded by --timeout, for the
server to close the TCP connection, and only then (or at the bound) closes its
own socket.  ``tcp_closed`` says who closed it and how long after the
handshake: a client that hangs up first would hide a server that never lets go.
With --notices, a harness that knows the server's side may end that wait: the
line ``server_keeps_tcp_open`` on stdin (the server reported the websocket's
request done and its connection kept for another request: it closes TCP only
once the client does) and the client closes its socket then, saying so.
Exit status 0 only if the exchange completed: at least one message was
received and answered, and the server then ended the connection.  Every wait
is bounded by --timeout.
"""
from __future__ import absolute_import, print_function

import argparse
import errno
import json
import select
import socket
import struct
import sys
import time

import websocket

DEFAULT_TIMEOUT = 5.0
KEPT_OPEN = "server_keeps_tcp_open"  # the harness's notice on stdin (--notices)
NORMAL_CLOSE_CODES = (1000, 1001)
_clock = getattr(time, "monotonic", time.time)  # CPython 2.7 has no monotonic clock


def answer_for(message):
    return "Hi from the python client (re: %s)" % message


def log(event, **fields):
    fields["event"] = event
    print(json.dumps(fields, sort_keys=True))
    sys.stdout.flush()


def describe_close(payload):
    """Decode a close frame payload as RFC 6455 5.5.1 defines it."""
    payload = bytes(payload)
    if not payload:
        return {"code": None, "reason": "", "valid": True}
    if len(payload) < 2:
        return {"code": None, "reason": "", "valid": False, "payload": repr(payload)}
    (code,) = struct.unpack("!H", payload[:2])
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return {"code": code, "reason": None, "valid": False, "payload": repr(payload)}
    valid = 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)
    return {"code": code, "reason": reason, "valid": valid}


def converse(ws, answer=answer_for):
    """Answer every message until the server closes; yield (event, fields) as it goes.

    Reads raw frames: websocket-client rejects an invalid close frame before
    showing it, and the close frame is part of the evidence.
    """
    while True:
        frame = ws.recv_frame()
        if frame.opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            data = frame.data
            if isinstance(data, bytes):
                data = data.decode("utf-8", "replace")
            yield "received", {"data": data}
            reply = answer(data)
            ws.send(reply)
            yield "sent", {"data": reply}
        elif frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            yield "closed", dict(describe_close(frame.data), by="server")
            try:
                ws.send_close()
            except Exception:
                pass  # the server may already have dropped the socket
            return
        elif frame.opcode == websocket.ABNF.OPCODE_PING:
            ws.pong(frame.data)


def await_server_close(sock, timeout, notices=None):
    """Read until the server closes TCP or ``timeout`` passes; the ``tcp_closed`` fields.

    Called right after the client's close frame went out: the closing
    handshake is complete from the client's side.  Bytes after the server's
    close frame are a protocol error (RFC 6455 5.5.1); they are counted.
    ``notices``: a file whose line KEPT_OPEN ends the wait (the server kept TCP open).
    """
    started = _clock()
    deadline = started + timeout
    stray = 0
    how = None
    while how is None:
        remaining = deadline - _clock()
        if remaining <= 0:
            break
        if notices is not None:
            ready = select.select([sock, notices], [], [], remaining)[0]
            if notices in ready:
                line = notices.readline()
                if not line:  # EOF: no notice can come any more
                    notices = None
                elif line.strip() == KEPT_OPEN:
                    return {"by": "client", "after_handshake": None, "bound": timeout,
                            "stray_bytes": stray, "notice": KEPT_OPEN,
                            "error": "the server reported it kept the TCP connection open "
                                     "for another request after the closing handshake"}
                continue
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        except socket.error as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                how = "reset"
            else:
                return {"by": "client", "after_handshake": None, "bound": timeout,
                        "stray_bytes": stray, "error": "%s: %s" % (type(exc).__name__, exc)}
        else:
            if data:
                stray += len(data)
            else:
                how = "fin"
    if how is None:
        return {"by": "client", "after_handshake": None, "bound": timeout, "stray_bytes": stray,
                "error": "the server kept the TCP connection open %.1f s (bound) after the "
                         "closing handshake" % timeout}
    return {"by": "server", "how": how, "after_handshake": round(_clock() - started, 6),
            "bound": timeout, "stray_bytes": stray}


def run(url, timeout, notices=None):
    try:
        ws = websocket.create_connection(url, timeout=timeout)
    except Exception as exc:
        log("error", stage="connect", error="%s: %s" % (type(exc).__name__, exc))
        return 1
    log("open", url=url)
    answered = 0
    try:
        for event, fields in converse(ws):
            log(event, **fields)
            answered += event == "sent"
        if ws.sock is not None:  # the handshake is done: the server is to close TCP first
            log("tcp_closed", handshake=True,
                **await_server_close(ws.sock, timeout, notices))
    except websocket.WebSocketTimeoutException:
        log("error", stage="receive", error="timeout: nothing from the server for %.1f s" % timeout)
        log("tcp_closed", handshake=False, by="client", after_handshake=None, bound=timeout,
            stray_bytes=0, error="the client gave up waiting for the server")
        return 1
    except websocket.WebSocketConnectionClosedException:
        log("closed", by="server", code=None, reason=None, valid=False, error="no close frame")
        log("tcp_closed", handshake=False, by="server", how="fin", after_handshake=None,
            bound=timeout, stray_bytes=0)
    except Exception as exc:
        log("error", stage="receive", error="%s: %s" % (type(exc).__name__, exc))
        return 1
    finally:
        ws.shutdown()
    return 0 if answered else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.client",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("url", help="e.g. ws://127.0.0.1:5000/view")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds any single wait may take (default %(default)s)")
    parser.add_argument("--notices", action="store_true",
                        help="read the harness's notices on stdin (%s)" % KEPT_OPEN)
    args = parser.parse_args(argv)
    return run(args.url, args.timeout, sys.stdin if args.notices else None)


if __name__ == "__main__":
    sys.exit(main())
