"""ddtrace's Flask integration, ``patch(flask=True)``, its traces kept in process.

The docs' manual setup is ``from ddtrace import patch; patch(flask=True)``
before Flask is imported.  ddtrace has no public way to swap its writer (the
HTTP client of the Datadog agent); its documented in-process hook is a trace
processor (``tracer.configure(trace_processors=[...])``, "trace filters"),
which sees each finished trace before the writer and drops it by returning
None.  So the capture is a trace processor that records and drops everything;
the agent URL points at a Unix socket that does not exist, so whatever else
ddtrace would send (telemetry, remote configuration, agent discovery) has
nowhere to go, not even loopback TCP.  The integration finishes the request
span when the server exhausts or closes the iterable (_TracedIterable).
"""
from __future__ import absolute_import

import os

from . import finished
from ._tag import tag_requests

NAME = "ddtrace"
TAG = "app.rid"
# Read by ddtrace at import: the same settings a user would export.
ENVIRON = {
    "DD_TRACE_AGENT_URL": "unix:///nonexistent/layer-capture.sock",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_TRACE_STARTUP_LOGS": "false",
}


def start():
    os.environ.update(ENVIRON)
    from ddtrace import patch

    patch(flask=True)
    try:
        _tracer().configure(trace_processors=[_capture()])
    except TypeError:  # ddtrace 1.x (the last on CPython 2.7): the same hook, older spelling
        _tracer().configure(settings={"FILTERS": [_capture()]})


def _tracer():
    try:
        from ddtrace.trace import tracer
    except ImportError:  # ddtrace < 2.x
        from ddtrace import tracer
    return tracer


def _capture():
    try:
        from ddtrace.trace import TraceFilter
    except ImportError:
        from ddtrace.filters import TraceFilter

    class CapturingProcessor(TraceFilter):
        """Records each finished request trace and keeps it from the writer."""

        def process_trace(self, trace):
            for span in trace:
                if span.parent_id is None or span.name == "flask.request":
                    rid = span.get_tag(TAG)
                    finished(NAME, int(rid) if rid is not None else None, "trace finished",
                             name=span.name, resource=span.resource)
                    break
            return None

    return CapturingProcessor()


def instrument(flask_app):
    def tag(rid):
        root = _tracer().current_root_span()
        if root is not None:
            root.set_tag(TAG, str(rid))

    tag_requests(flask_app, tag)
    return flask_app


def evidence(flask_app, application):
    import ddtrace
    import flask

    return {"version": ddtrace.__version__,
            "hook": "ddtrace.patch(flask=True): Flask.wsgi_app wrapped",
            "hook_installed": bool(getattr(flask, "_datadog_patch", False))}
