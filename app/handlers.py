"""The websocket handler the server runs (``python -m app --handler NAME``).

The views (app/web.py) and the middleware are one code path whichever handler
serves them: an adapter only decides which gevent.pywsgi handler class the
server gets, how a Flask websocket route is registered, and how a raw WSGI app
finds its websocket.  The websocket a view gets has the operations the views
use: ``send(message)``, ``receive()`` (None once the client has closed),
``close(code, reason)`` and ``closed``.

- ``gevent-websocket``: geventwebsocket's WebSocketHandler; the socket is
  ``environ["wsgi.websocket"]`` (the reference, vanilla or patched).
- ``gevent-ws``: gevent_ws's WebSocketHandler, the same environ key.
- ``flask-sock``: gevent's plain WSGIHandler; flask-sock's ``Sock.route``
  registers the Flask routes and takes the socket from the server
  (simple-websocket's ``Server``).

Every adapter emits ``websocket_accepted`` (rid, websocket_class) when a view
or raw app gets its websocket: the class that really handled the upgrade.
"""
from __future__ import absolute_import

from .events import emit

DEFAULT = "gevent-websocket"


def _qualified(cls):
    return "%s.%s" % (cls.__module__, cls.__name__)


def _accepted(ws, environ):
    emit("websocket_accepted", rid=environ.get("app.rid"), path=environ.get("PATH_INFO"),
         websocket_class=_qualified(type(getattr(ws, "native", ws))))
    return ws


class _EnvironKeyHandler(object):
    """A pywsgi handler class that puts the websocket in ``environ["wsgi.websocket"]``."""

    name = module = handler_path = None
    distributions = ()  # the handler's own first, then what it brings
    logs_rejections = False  # app.__main__.logging_rejections hooks upgrade_websocket()

    def handler_class(self):
        module_name, _, class_name = self.handler_path.rpartition(".")
        module = __import__(module_name, fromlist=[class_name])
        return getattr(module, class_name)

    def wrap(self, ws):
        return ws

    def websocket(self, environ):
        ws = environ.get("wsgi.websocket")
        return None if ws is None else _accepted(self.wrap(ws), environ)

    def route(self, app, rule, view, rule_options):
        """Register ``view(ws, rid)`` on ``rule``; it returns the Flask response."""
        from flask import Response, request

        from .web import NOT_A_WEBSOCKET

        def endpoint():
            ws = self.websocket(request.environ)
            if ws is None:  # only reachable where Werkzeug has no websocket rules
                return Response(NOT_A_WEBSOCKET, status=400, mimetype="text/plain")
            return view(ws, request.environ.get("app.rid"))

        app.add_url_rule(rule, view.__name__, endpoint, **rule_options)

    def raw(self, app):
        """The raw WSGI app ``app(environ, start_response, ws)`` as a WSGI app."""
        def raw_app(environ, start_response):
            return app(environ, start_response, self.websocket(environ))

        return raw_app


class GeventWebsocket(_EnvironKeyHandler):
    name = "gevent-websocket"
    distributions = ("gevent-websocket",)
    module = "geventwebsocket"
    handler_path = "geventwebsocket.handler.WebSocketHandler"
    logs_rejections = True


class _CloseWithoutReason(object):
    """gevent-ws's ``close(status)`` sends no reason: the adapter drops it (a defect
    the /raw/close checks show), everything else is gevent-ws's own."""

    def __init__(self, native):
        self.native = native

    def send(self, message):
        return self.native.send(message)

    def receive(self):
        return self.native.receive()

    def close(self, code=1000, reason=None):
        return self.native.close(code)

    @property
    def closed(self):
        return self.native.closed


class GeventWs(_EnvironKeyHandler):
    name = "gevent-ws"
    distributions = ("gevent-ws",)
    module = "gevent_ws"
    handler_path = "gevent_ws.WebSocketHandler"

    def wrap(self, ws):
        return _CloseWithoutReason(ws)


class _GreenletThread(object):
    """What simple-websocket uses of threading.Thread (name, start), as a greenlet.

    Without monkey patching, a real thread and threading.Event would block
    gevent's hub in every receive(); flask-sock's SOCK_SERVER_OPTIONS (passed
    to simple_websocket.Server) take these classes instead.
    """

    def __init__(self, target):
        self.name = "simple_websocket"
        self.target = target

    def start(self):
        import gevent

        gevent.spawn(self.target)


class _SimpleWebsocket(object):
    """simple_websocket.Server under the views' names: receive() -> None once closed."""

    def __init__(self, native):
        self.native = native

    def send(self, message):
        return self.native.send(message)

    def receive(self):
        from simple_websocket import ConnectionClosed

        try:
            return self.native.receive()
        except ConnectionClosed:
            return None

    def close(self, code=1000, reason=None):
        return self.native.close(code, reason)

    @property
    def closed(self):
        return not self.native.connected


class FlaskSock(object):
    name = "flask-sock"
    distributions = ("flask-sock", "simple-websocket", "wsproto", "h11")
    module = "flask_sock"
    logs_rejections = False

    def handler_class(self):
        from gevent.pywsgi import WSGIHandler

        return WSGIHandler

    def options(self):
        import gevent.event

        return {"thread_class": _GreenletThread, "event_class": gevent.event.Event}

    def route(self, app, rule, view, rule_options):
        from flask import request
        from flask_sock import Sock

        sock = app.extensions.get("sock")
        if sock is None:
            sock = app.extensions["sock"] = Sock(app)
            app.config["SOCK_SERVER_OPTIONS"] = self.options()

        def endpoint(ws):
            # flask-sock drops what the view returns (its streaming body included).
            view(_accepted(_SimpleWebsocket(ws), request.environ),
                 request.environ.get("app.rid"))

        endpoint.__name__ = view.__name__
        sock.route(rule)(endpoint)

    def raw(self, app):
        """What Sock.route does, at the WSGI level: accept, run, close, answer nothing.

        flask-sock has no WSGI-level route; this is its route's body around a raw
        app, so what the raw app starts, writes or returns is dropped as flask-sock
        drops a view's return value.
        """
        def raw_app(environ, start_response):
            from simple_websocket import ConnectionClosed, Server

            if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
                return app(environ, start_response, None)
            native = Server.accept(environ, **self.options())
            ws = _accepted(_SimpleWebsocket(native), environ)
            try:
                app(environ, lambda status, headers, exc_info=None: (lambda data: None), ws)
            except ConnectionClosed:
                pass
            try:
                native.close()
            except Exception:  # what Sock.route does: the client may be gone
                pass
            return []

        return raw_app


ADAPTERS = dict((a.name, a) for a in (GeventWebsocket(), GeventWs(), FlaskSock()))
_current = [ADAPTERS[DEFAULT]]


def use(name):
    if name not in ADAPTERS:
        raise SystemExit("error: handler %r (--handler or APP_HANDLER) is unknown; choose one "
                         "of %s" % (name, ", ".join(sorted(ADAPTERS))))
    _current[0] = ADAPTERS[name]
    return _current[0]


def current():
    return _current[0]


def describe(adapter, handler_class, versions):
    """The readiness line's ``handler``: what is installed and imported, not what was asked.

    ``versions``: {distribution: installed version} for ``adapter.distributions``.
    """
    import sys

    module = sys.modules.get(adapter.module)
    return {"name": adapter.name, "distribution": adapter.distributions[0],
            "version": versions[adapter.distributions[0]], "versions": versions,
            "module": adapter.module, "module_file": getattr(module, "__file__", None),
            "server_handler_class": _qualified(handler_class)}
