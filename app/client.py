"""``python -m app.client URL``: the Python twin of the seed's node client.

Logs every message the server sends, answers each one, and exits when the
server closes.  Output is one JSON object per line (open, received, sent,
closed, error) so that a harness and a person read the same transcript.
Exit status 0 only if the exchange completed: at least one message was
received and answered, and the server then ended the connection.  Every wait
is bounded by --timeout.
"""
from __future__ import absolute_import, print_function

import argparse
import json
import struct
import sys

import websocket

DEFAULT_TIMEOUT = 5.0
NORMAL_CLOSE_CODES = (1000, 1001)


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


def run(url, timeout):
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
    except websocket.WebSocketTimeoutException:
        log("error", stage="receive", error="timeout: nothing from the server for %.1f s" % timeout)
        return 1
    except websocket.WebSocketConnectionClosedException:
        log("closed", by="server", code=None, reason=None, valid=False, error="no close frame")
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
    args = parser.parse_args(argv)
    return run(args.url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
