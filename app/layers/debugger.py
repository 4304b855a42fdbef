"""Werkzeug's DebuggedApplication, as ``debug=True`` setups wrap the application.

``app.run(debug=True)`` serves ``DebuggedApplication(app, evalex=True)``, and
gevent users write ``WSGIServer(addr, DebuggedApplication(app), ...)``.  Its
``debug_application`` is a generator: it calls the application only when the
server first iterates, and closes the application's iterable after the last
chunk.  That close is its end-of-request work; a witness between the debugger
and the application records it (it changes nothing it passes on).
"""
from __future__ import absolute_import

import werkzeug
from werkzeug.debug import DebuggedApplication

from . import finished
from ._tag import RID_KEY

NAME = "werkzeug-debugger"


class _CloseWitness(object):
    """Passes the application through; records when the debugger closes its iterable."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return _Witnessed(self.app(environ, start_response), environ.get(RID_KEY))


class _Witnessed(object):
    def __init__(self, inner, rid):
        self.inner = inner
        self.rid = rid

    def __iter__(self):
        return iter(self.inner)

    def close(self):
        finished(NAME, self.rid, "application iterable closed")
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def wrap(application):
    return DebuggedApplication(_CloseWitness(application), evalex=True)


def evidence(flask_app, application):
    return {"version": getattr(werkzeug, "__version__", None) or _version(),
            "hook": "DebuggedApplication(app, evalex=True)",
            "hook_installed": isinstance(application, DebuggedApplication)}


def _version():
    from importlib.metadata import version

    return version("Werkzeug")
