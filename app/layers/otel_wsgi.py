"""opentelemetry-instrumentation-wsgi: ``app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)``.

Its docs' Flask example.  It calls the application at once but returns a
generator whose ``finally`` ends the span: the span ends when the server
iterates the result to the end or closes a generator it has started.
"""
from __future__ import absolute_import

from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from ._otel import provide, request_hook, version

NAME = "opentelemetry-wsgi"


def instrument(flask_app):
    provide(NAME)
    flask_app.wsgi_app = OpenTelemetryMiddleware(flask_app.wsgi_app, request_hook=request_hook)
    return flask_app


def evidence(flask_app, application):
    return {"version": version("opentelemetry-instrumentation-wsgi"),
            "sdk": version("opentelemetry-sdk"),
            "hook": "app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)",
            "hook_installed": isinstance(flask_app.wsgi_app, OpenTelemetryMiddleware)}
