"""The seed's Flask application, plus raw WSGI apps that probe the handler.

Import only after the agent has started (see app.agent).
"""
from __future__ import absolute_import

import sys

import gevent
from flask import Flask, Response

from . import handlers
from .events import emit

PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Streaming contents</title></head>\n"
    "<body><h1>Hello from the page!</h1></body></html>\n"
)
VIEW_MESSAGE = "Hello from view!"
ITERATOR_MESSAGE = "Hello from iterator!"
ANSWER_TIMEOUT = 10.0  # seconds a view waits for the client's answer
NOT_A_WEBSOCKET = "This route speaks websocket only: connect with a websocket client.\n"
# /raw/close and /raw/close-long: the server ends the websocket with
# ws.close(1000, reason) after the exchange.  The long reason is 200 bytes of
# UTF-8, more than a close frame holds (RFC 6455 5.5: payload <= 125 bytes).
CLOSE_CODE = 1000
CLOSE_REASONS = {"close": u"bye", "close-long": u"\u00e9" * 100}


def _websocket_rule_options():
    """``{"websocket": True}`` where Werkzeug sends an upgrade request to websocket rules only.

    Decided by asking this Werkzeug, not by its version, because the lines differ
    (each seen serving the cells): 0.x has no ``websocket`` argument; 1.0 has it but
    calls a request a websocket one only if ``wsgi.url_scheme`` is ws/wss, which
    gevent-websocket never sets, so there an upgrade matches ordinary rules and a
    websocket rule answers 400; 2.0+ reads the Connection and Upgrade headers and
    answers 400 (WebsocketMismatch) on an ordinary rule.
    """
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map, Rule

    try:
        probe = Map([Rule("/", endpoint="ws", websocket=True)])
    except TypeError:
        return {}
    upgrade = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/",
               "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "HTTP_HOST": "localhost", "wsgi.url_scheme": "http",
               "HTTP_CONNECTION": "Upgrade", "HTTP_UPGRADE": "websocket"}
    try:
        probe.bind_to_environ(upgrade).match()
    except HTTPException:  # WebsocketMismatch: an upgrade is an ordinary request here
        return {}
    return {"websocket": True}


def exchange(ws, message, event, rid):
    """Send one message, wait (bounded) for the answer, and record it."""
    ws.send(message)
    answer = None
    with gevent.Timeout(ANSWER_TIMEOUT, False):
        answer = ws.receive()
    if answer is None:
        # client_gone: the client dropped the connection (receive() saw it
        # close) rather than staying silent for ANSWER_TIMEOUT.
        emit(event + "_missing", rid=rid, sent=message, timeout=ANSWER_TIMEOUT,
             client_gone=bool(getattr(ws, "closed", False)))
    else:
        if isinstance(answer, bytes):
            answer = answer.decode("utf-8", "replace")
        emit(event, rid=rid, sent=message, data=answer)
    return answer


def create_app():
    app = Flask(__name__)
    ws_rule = _websocket_rule_options()

    handler = handlers.current()

    def websocket_route(rule):
        def register(view):
            handler.route(app, rule, view, ws_rule)
            return view

        return register

    @app.route("/")
    def page():
        return Response(PAGE, mimetype="text/html")

    @websocket_route("/view")
    def view(ws, rid):
        exchange(ws, VIEW_MESSAGE, "view_received", rid)
        return Response("", mimetype="text/html")

    @websocket_route("/streaming")
    def streaming(ws, rid):
        exchange(ws, VIEW_MESSAGE, "view_received", rid)

        def response_iter():
            exchange(ws, ITERATOR_MESSAGE, "iterator_received", rid)
            yield b""

        return Response(response_iter(), direct_passthrough=True, mimetype="text/html")

    @websocket_route("/echo")
    def echo_view(ws, rid):
        echo(ws, rid)
        return Response("", mimetype="text/plain")

    return app


def echo(ws, rid):
    """Send every message back until the client closes (the benchmark's round trip).

    One event when the connection ends, none per message: emitting is the
    costliest thing a message could do here.  Unbounded by design: the
    client's close (or its socket's) ends the loop, SIGTERM ends the server.
    """
    count = 0
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
        count += 1
    emit("echo_done", rid=rid, messages=count)


# Raw WSGI apps under /raw/<kind>: each returns exactly one kind of iterable, so
# the handler's close() contract can be checked without Flask in between.


class _ClosableList(list):
    def close(self):
        pass


class _IterableWithClose(object):
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        pass


def _generator(raise_midway):
    yield b"one"
    if raise_midway:
        raise RuntimeError("raised mid-way on purpose")
    yield b"two"


def _outcome(call):
    try:
        call()
    except Exception as exc:  # the contract under test: report it, do not crash
        return type(exc).__name__
    return "ok"


def _start_response_contract(write, start_response):
    """PEP 3333's write() and exc_info rules, as seen from the application."""
    def with_exc_info():
        try:
            raise KeyError("application error")
        except KeyError:
            start_response("500 Internal Server Error", [], sys.exc_info())

    return {
        "write_bytes": _outcome(lambda: write(b"written")),
        "write_text": _outcome(lambda: write(u"text")),
        "exc_info": _outcome(with_exc_info),  # headers are sent: must re-raise KeyError
        "second_call": _outcome(lambda: start_response("200 OK", [])),
    }


def _request_body(environ):
    """The request body as Flask's request.get_data() reads it (Werkzeug)."""
    from werkzeug.wrappers import Request

    return Request(environ).get_data()


def raw_app(environ, start_response, ws):
    """``ws``: the websocket the handler's adapter found (app.handlers), or None."""
    kind = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
    rid = environ.get("app.rid")
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if ws is None:
        return [NOT_A_WEBSOCKET.encode("ascii")]
    if kind == "echo":  # the ceiling of the benchmark: the echo without Flask
        echo(ws, rid)
        return []
    if kind == "read-input":
        # What an APM integration does around a request (sentry-sdk's Flask
        # one reads the body at its end): the upgrade GET's body must be empty
        # and terminated, not the socket that now carries the frames.
        emit("input_read", rid=rid, when="before", length=len(_request_body(environ)))
        exchange(ws, VIEW_MESSAGE, "view_received", rid)
        emit("input_read", rid=rid, when="after", length=len(_request_body(environ)))
        return []
    exchange(ws, VIEW_MESSAGE, "view_received", rid)
    if kind == "write":
        emit("start_response_contract", rid=rid, **_start_response_contract(write, start_response))
        return []
    if kind in CLOSE_REASONS:
        ws.close(CLOSE_CODE, CLOSE_REASONS[kind])
        emit("server_closed", rid=rid, code=CLOSE_CODE, reason=CLOSE_REASONS[kind])
        return []
    iterables = {
        "list": lambda: _ClosableList([b"one", b"two"]),
        "generator": lambda: _generator(False),
        "raising": lambda: _generator(True),
        "object": lambda: _IterableWithClose([b"one", b"two"]),
    }
    if kind not in iterables:
        emit("unknown_raw_kind", rid=rid, kind=kind)
        return []
    return iterables[kind]()
