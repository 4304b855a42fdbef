"""A tiny gevent server for one question: does the process survive gevent.pywsgi closing a
connection's socket while the websocket handler still has a greenlet reading it?

``<server python> closed_under_reader.py KEEP``, gevent-ws installed: each websocket gets
"hello"; the view then works, blocking the loop, until the client's answer has arrived
(at most WORK seconds), reads the answer and returns.  KEEP=1 keeps each request's
``wsgi.input``, as a layer that holds the request past its response does, so gevent's own
close of that socket waits for the last reference.  stdout: ``{"port": N}`` once
listening, then ``{"received": ...}`` per answer read.

gevent-ws starts a reader greenlet per websocket and never stops it.  When the view
returns, gevent.pywsgi closes the connection's file descriptor itself
(``WSGIHandler.handle``: ``_sock.close()``), under the reader's watcher; if that watcher
was started in the same loop iteration (the answer was already there, so the reader read
it and went back to wait) and nothing cancelled it, libev hands a closed fd to
epoll_ctl and aborts the process.  Python 3 only, like gevent-ws.
"""

import json
import select
import sys
from collections.abc import Callable, Iterable
from typing import Any

from gevent.pywsgi import WSGIServer
from gevent_ws import WebSocketHandler

WORK = 5.0  # s the view's work may last: until the answer is there, whatever the load


def main(keep: bool) -> None:
    kept = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if keep:
            kept.append(environ["wsgi.input"])
        ws = environ["wsgi.websocket"]
        ws.send("hello")
        # the standard library's select, not gevent's (nothing is monkey-patched): the
        # loop stays busy, so the reader greenlet first reads once the answer is there
        select.select([ws.socket.fileno()], [], [], WORK)
        print(json.dumps({"received": ws.receive()}), flush=True)
        return []

    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None)
    server.start()
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1] == "1")
