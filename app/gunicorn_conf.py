"""gunicorn settings that make a gunicorn deployment observable like ``python -m app``.

    [newrelic-admin run-program] gunicorn -c app/gunicorn_conf.py -w 1 -b 127.0.0.1:0 \\
        -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker app.wsgi:application

Nothing here changes how a request is served: the worker and its handler are
gevent-websocket's own, the agent is newrelic-admin's.  What it adds is what
the harness needs from any server (app/__main__.py does the same for
``python -m app``): JSON events on stdout, the readiness line once the worker
serves, the close() probe outside the agent's wrappers, each request's and
connection's end (app.connections), the stdin lifeline.

A config file, not a module: gunicorn reads it before it puts the working
directory on sys.path, so ``app`` is imported inside the hooks only.
"""
from __future__ import absolute_import

import os
import sys

# app.__main__.STOP_TIMEOUT: open websockets get 1 s after SIGTERM.
graceful_timeout = 1
# gunicorn >= 25.1 opens a control socket at one path per user
# ($HOME/.gunicorn/gunicorn.ctl): servers running side by side would share it.
control_socket_disable = True

REGISTER_TIMEOUT = 10.0  # s, as app.agent: developer mode registers locally, at once


def _agent_loaded():
    # newrelic-admin run-program imported the agent before gunicorn started.
    return "newrelic" in sys.modules


def on_starting(server):
    """The master, before it binds or forks: what python -m app does at start."""
    from app.__main__ import _env_flag

    if _agent_loaded():  # every outbound attempt becomes an event, in the worker too
        from app.agent import _watch_outbound

        _watch_outbound()
    if _env_flag("APP_WATCH_STDIN"):
        # EOF on stdin: SIGTERM to the master, which stops its worker gracefully
        # (the worker, orphaned, would also exit within a second by itself).
        from app.lifeline import watch_stdin

        watch_stdin()


def post_worker_init(worker):
    """The worker, application loaded, before it creates its server."""
    agent_active = False
    if _agent_loaded():
        # As app.agent: until the agent's application is registered, requests
        # are not monitored and RUM is not applied.  Register before readiness.
        import newrelic.agent

        application = newrelic.agent.register_application(timeout=REGISTER_TIMEOUT)
        agent_active = bool(application.active)
    app_uri = getattr(worker.app, "app_uri", None) or ""
    # gunicorn's GeventPyWSGIWorker.run() builds its server with
    # handler_class=worker.wsgi_handler (GeventWebSocketWorker's WebSocketHandler):
    # request_done and connection_done (app.connections) watch it from outside.
    from app.connections import observed

    worker.wsgi_handler = observed(worker.wsgi_handler)
    worker.server_class = _observed(worker.server_class, dict(
        launcher="gunicorn", agent=_agent_loaded(), agent_active=agent_active,
        rum=os.environ.get("NEW_RELIC_ENVIRONMENT") == "rum_on",
        hello_goodbyer=app_uri.endswith(":hello_goodbyer"), app=app_uri))


def _observed(server_class, readiness):
    """``server_class`` with the close() probe outermost and a readiness line on start."""
    from app.__main__ import emit_listening
    from app.middleware import outermost

    class ObservedServer(server_class):
        def __init__(self, *args, **kwargs):
            super(ObservedServer, self).__init__(*args, **kwargs)
            # The agent wraps the application on its way here (gunicorn's
            # Application.wsgi, gevent's WSGIServer.__init__), and its iterable
            # closes itself when exhausted.  The probe must see what the handler
            # sees, so it goes on afterwards, outside every wrapper.
            self.application = outermost(self.application)

        def start(self):
            super(ObservedServer, self).start()
            host, port = self.address[:2]
            emit_listening(host, port, **readiness)

    return ObservedServer


def on_exit(server):
    """The master, last: as python -m app's final event."""
    from app.events import emit

    try:
        emit("stopped")
    except (IOError, OSError):  # the harness is gone (app.lifeline): nobody to tell
        pass
