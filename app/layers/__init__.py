"""Today's request layers (``python -m app --layer NAME``), each set up as its docs say.

Every layer is set up the way its documentation tells Flask users to, with
only its transport or exporter replaced by an in-process capture, so nothing
leaves the process.  A layer's end-of-request work (a transaction sent, a span
exported, the debugger's generator finishing) becomes one ``layer_finished``
event carrying the request id of the ``request`` event (app.middleware), so a
harness can tell which connection's work ended and which never did.  Before any of
that, a thin wrapper outside the layer's outermost one emits ``layer_entered`` when the
server's call reaches the layer: a layer that never finished a request must first have
been entered for it (without that event it was never started), and that must be known
whether or not the application behind it is ever called.

A layer module has three hooks, all optional:

* ``start()``: before Flask is imported (what must patch Flask itself);
* ``instrument(flask_app)``: on the application object, as the docs show;
* ``wrap(application)``: around the WSGI application the server is given;

and ``evidence(flask_app, application)``: what proves, at readiness, that the
layer is really in this server (its version, its hook installed).
"""
from __future__ import absolute_import

import importlib

from ..events import emit
from ._tag import RID_KEY

# name -> (module under app.layers, distribution to report the version of,
#          import names the layer needs)
LAYERS = {
    "elastic-apm": ("elastic", "elastic-apm", ("elasticapm", "blinker")),
    "opentelemetry": ("otel_flask", "opentelemetry-instrumentation-flask",
                      ("opentelemetry.sdk", "opentelemetry.instrumentation.flask")),
    "opentelemetry-wsgi": ("otel_wsgi", "opentelemetry-instrumentation-wsgi",
                           ("opentelemetry.sdk", "opentelemetry.instrumentation.wsgi")),
    "sentry": ("sentry", "sentry-sdk", ("sentry_sdk", "blinker")),
    "werkzeug-debugger": ("debugger", "Werkzeug", ("werkzeug.debug",)),
    "ddtrace": ("datadog", "ddtrace", ("ddtrace",)),
}


def names():
    return sorted(LAYERS)


def distribution(name):
    return LAYERS[name][1]


def required_modules(name):
    return LAYERS[name][2]


def module(name):
    return importlib.import_module("." + LAYERS[name][0], __name__)


def entered(layer, environ):
    """The server's call for this request reached ``layer``'s outermost wrapper."""
    emit("layer_entered", layer=layer, rid=environ.get(RID_KEY))


class Entered(object):
    """``application`` (a layer's outermost wrapper), emitting ``layer_entered`` when called.

    Eager and transparent: it returns what the layer returns, so it neither hides nor
    adds laziness.
    """

    def __init__(self, layer, application):
        self.layer = layer
        self.application = application

    def __call__(self, environ, start_response):
        entered(self.layer, environ)
        return self.application(environ, start_response)


def finished(layer, rid, what, **fields):
    """The layer's end-of-request work for request ``rid`` happened (rid None: not known)."""
    emit("layer_finished", layer=layer, rid=rid, what=what, **fields)


def _hook(name, hook, *args):
    function = getattr(module(name), hook, None)
    return function(*args) if function is not None else (args[0] if args else None)


def start(name):
    if name:
        _hook(name, "start")


def instrument(name, flask_app):
    if name:
        _hook(name, "instrument", flask_app)
    return flask_app


def _wraps(name):
    """The layer wraps the application the server is given (its ``wrap`` hook)."""
    return hasattr(module(name), "wrap")


def inside_flask(name, flask_app):
    """The Flask application as its callers call it: a layer set up inside Flask (one
    without a ``wrap`` hook: it patches Flask or instruments the app) is entered when
    the Flask application is called, under whatever lazy middleware wraps it."""
    if name and not _wraps(name):
        return Entered(name, flask_app)
    return flask_app


def wrap(name, application):
    if not name or not _wraps(name):
        return application
    return Entered(name, module(name).wrap(application))


def evidence(name, flask_app, application):
    if not name:
        return None
    if isinstance(application, Entered):  # the layer's own wrapper is what it checks
        application = application.application
    found = module(name).evidence(flask_app, application)
    found["layer"] = name
    return found
