"""opentelemetry-instrumentation-flask: what OpenTelemetry's docs tell Flask users to use.

``FlaskInstrumentor().instrument_app(app)``.  It starts the server span in a
before_request hook and ends it in teardown_request, which Flask runs when
its wsgi_app returns (before the server iterates the response), so the span
should end whatever the handler does with the iterable.
"""
from __future__ import absolute_import

from opentelemetry.instrumentation.flask import FlaskInstrumentor

from ._otel import provide, request_hook, version

NAME = "opentelemetry"


def instrument(flask_app):
    provide(NAME)
    FlaskInstrumentor().instrument_app(flask_app, request_hook=request_hook)
    return flask_app


def evidence(flask_app, application):
    return {"version": version("opentelemetry-instrumentation-flask"),
            "sdk": version("opentelemetry-sdk"),
            "hook": "FlaskInstrumentor().instrument_app(app)",
            "hook_installed": bool(getattr(flask_app, "_is_instrumented_by_opentelemetry",
                                           False))}
