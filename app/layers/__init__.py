"""Today's request layers (``python -m app --layer NAME``), each set up as its docs say.

Every layer is set up the way its documentation tells Flask users to, with
only its transport or exporter replaced by an in-process capture, so nothing
leaves the process.  A layer's end-of-request work (a transaction sent, a span
exported, the debugger's generator finishing) becomes one ``layer_finished``
event carrying the request id of the ``request`` event (app.middleware), so a
harness can tell which connection's work ended and which never did.

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


def wrap(name, application):
    if not name:
        return application
    return _hook(name, "wrap", application)


def evidence(name, flask_app, application):
    if not name:
        return None
    found = module(name).evidence(flask_app, application)
    found["layer"] = name
    return found
