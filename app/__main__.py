"""``python -m app``: serve the experiment with gevent's WSGIServer and WebSocketHandler.

stdout carries one JSON event per line, the first being the readiness line
``{"event": "listening", "url": ...}``; gevent's access and error logs go to
stderr.  Every option has an environment equivalent (APP_HOST, APP_PORT,
APP_AGENT, APP_RUM, APP_HELLO_GOODBYER, APP_HANDLER, APP_LAYER, APP_MONKEY_PATCH) so a
harness can configure a cell without building argument lists.
"""
from __future__ import absolute_import, print_function

import argparse
import errno
import os
import signal
import socket
import sys

from . import handlers, layers
from .events import emit

STOP_TIMEOUT = 1.0  # seconds open websockets get to finish on SIGTERM/SIGINT
EXIT_USAGE = 2

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _env_flag(name):
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SystemExit("error: %s=%r is not a boolean; use 1 or 0" % (name, value))


def _env_choice(name, choices):
    value = os.environ.get(name, "").strip()
    if value and value not in choices:
        raise SystemExit("error: %s=%r is not one of %s; unset it or pick one"
                         % (name, value, ", ".join(choices)))
    return value or None


def _add_flag(parser, name, env, help):
    dest = name.replace("-", "_")
    parser.add_argument("--" + name, dest=dest, action="store_true", help=help + " [%s]" % env)
    parser.add_argument("--no-" + name, dest=dest, action="store_false")
    parser.set_defaults(**{dest: _env_flag(env)})


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"),
                        help="address to bind [APP_HOST, default 127.0.0.1]")
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", "5000")),
                        help="port to bind, 0 for an ephemeral one [APP_PORT, default 5000]")
    _add_flag(parser, "agent", "APP_AGENT", "start the New Relic agent (developer mode)")
    _add_flag(parser, "rum", "APP_RUM", "agent's browser monitoring (RUM) on")
    _add_flag(parser, "hello-goodbyer", "APP_HELLO_GOODBYER", "wrap the app in HelloGoodbyer")
    parser.add_argument("--handler", default=os.environ.get("APP_HANDLER", handlers.DEFAULT),
                        choices=sorted(handlers.ADAPTERS),
                        help="the websocket handler (app/handlers.py) [APP_HANDLER, default %s]"
                        % handlers.DEFAULT)
    parser.add_argument("--layer", choices=layers.names(),
                        default=_env_choice("APP_LAYER", layers.names()),
                        help="set up one of today's request layers as its docs say, its "
                        "transport an in-process capture (app.layers) [APP_LAYER]")
    _add_flag(parser, "monkey-patch", "APP_MONKEY_PATCH",
              "gevent.monkey.patch_all() first, as gevent's docs ask (the layer sessions: "
              "elastic-apm and sentry-sdk keep per-request state greenlet-safe only then)")
    _add_flag(parser, "watch-stdin", "APP_WATCH_STDIN",
              "stop when stdin reaches EOF (the harness that started the server is gone)")
    return parser.parse_args(argv)


def versions(layer=None):
    names = ("gevent", "gevent-websocket", "greenlet", "Flask", "Werkzeug", "newrelic")
    if layer:
        names += (layers.distribution(layer),)
    if "gunicorn" in sys.modules:  # served by gunicorn (app.gunicorn_conf)
        names += ("gunicorn",)
    found = {"python": ".".join(str(n) for n in sys.version_info[:3])}
    found.update(versions_of(names))
    return found


def versions_of(names):
    """{distribution: installed version or None}."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # CPython 2.7
        import pkg_resources

        PackageNotFoundError = pkg_resources.DistributionNotFound

        def version(name):
            return pkg_resources.get_distribution(name).version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def module_files():
    """Where this process imported gevent-websocket and the agent from: the build it runs."""
    return dict((name, getattr(sys.modules.get(name), "__file__", None))
                for name in ("geventwebsocket", "newrelic"))


def emit_listening(host, port, layer=None, **fields):
    """The readiness line, the same whichever way the server was started."""
    # One dict, not keywords then **fields: a formatter splitting the call would put a
    # comma after **fields, which Python 2.7 cannot parse.
    fields.update(host=host, port=port, url="http://%s:%d" % (host, port),
                  agent_loaded="newrelic" in sys.modules, versions=versions(layer),
                  layer=layer, module_files=module_files(),
                  # the process this one was forked from (app.forkserver), None if none
                  forked_from=os.environ.get("APP_FORKED_FROM"))
    emit("listening", **fields)


def build_application(hello_goodbyer, layer=None, with_flask_app=False):
    """The WSGI application (``with_flask_app``: and the Flask app inside it)."""
    from .middleware import HelloGoodbyer
    from .stats import stats_app
    from .web import create_app, raw_app

    flask_app = layers.instrument(layer, create_app())
    if "newrelic" in sys.modules:  # the agent is this server's layer (app.agent)
        from .agent import track_transactions

        track_transactions()
    raw = handlers.current().raw(raw_app)
    called = layers.inside_flask(layer, flask_app)
    main = HelloGoodbyer(called) if hello_goodbyer else called

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/raw/"):
            return raw(environ, start_response)
        if environ.get("PATH_INFO", "") == "/_stats":  # fds, greenlets, RSS (app.stats)
            return stats_app(environ, start_response)
        return main(environ, start_response)

    application = layers.wrap(layer, dispatch)
    return (application, flask_app) if with_flask_app else application


def _text(value):
    """Bytes (a status in gevent >= 1.5, anything on CPython 2.7) as latin-1 text."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def logging_rejections(handler_class):
    """``handler_class`` that emits one ``rejected`` event per upgrade it refuses.

    gevent-websocket answers a bad upgrade request (400, 426, ...) itself,
    without calling the application, so no other event shows it; an exception
    in the handshake (gevent then answers 500) is a rejection too.
    """

    class RejectionLoggingHandler(handler_class):
        def upgrade_websocket(self):
            try:
                result = super(RejectionLoggingHandler, self).upgrade_websocket()
            except Exception as exc:
                self._emit_rejected("500 Internal Server Error", None, "%s.%s: %s" % (
                    type(exc).__module__, type(exc).__name__, exc))
                raise
            status = _text(self.status or "")
            if status and not status.startswith("101"):
                self._emit_rejected(status, result, None)
            return result

        def _emit_rejected(self, status, body, error):
            get = self.environ.get
            emit("rejected", status=status, body=u"".join(_text(c) for c in body or []),
                 body_types=sorted(set(type(c).__name__ for c in body or [])), error=error,
                 method=_text(get("REQUEST_METHOD")), path=_text(get("PATH_INFO")),
                 query=_text(get("QUERY_STRING", "")), http_version=_text(self.request_version))

    return RejectionLoggingHandler


# import name -> what to install (distribution name)
REQUIRED = (("gevent", "gevent"), ("flask", "Flask"))


def _find(name):
    """Whether ``name`` is importable, without importing it (Flask must come after the agent)."""
    try:
        from importlib.util import find_spec
    except ImportError:  # CPython 2.7
        import imp

        try:
            imp.find_module(name.split(".")[0])  # a package's own modules: its top level
        except ImportError:
            return False
        return True
    return find_spec(name) is not None


def _monkey_patched():
    """gevent patched thread-locals (what elastic-apm and sentry-sdk look at)."""
    from gevent import monkey

    return bool(monkey.is_object_patched("_threading", "local")
                or monkey.is_object_patched("threading", "local"))


def missing_dependencies(args):
    """One line naming what is missing and the fix, or None."""
    handler = handlers.use(args.handler)
    required = REQUIRED + ((handler.module, handler.distributions[0]),) + (
        (("newrelic", "newrelic"),) if args.agent else ())
    if args.layer:
        required += tuple((name, layers.distribution(args.layer))
                          for name in layers.required_modules(args.layer))
    missing = sorted(set(dist for module, dist in required if not _find(module)))
    if not missing:
        return None
    options = (["--stack", "seed"] if sys.version_info[0] == 2 else []) + sys.argv[1:]
    command = "nox -s serve" + (" -- " + " ".join(options) if options else "")
    return ("error: python -m app needs %s, not installed for %s (%s); run `%s` instead: it "
            "installs them and starts the server (README: Run the app by hand)"
            % (", ".join(missing), sys.executable, ".".join(map(str, sys.version_info[:3])),
               command))


def main(argv=None):
    args = parse_args(argv)
    if args.monkey_patch:  # before anything below imports threading or starts a thread
        from gevent import monkey

        monkey.patch_all()
    problem = missing_dependencies(args)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    agent_active = False
    if args.agent:
        from . import agent

        agent_active = agent.start(args.rum)
    if args.layer:
        from .agent import _watch_outbound

        # The agent's proof of no network, for the layer: every attempt off
        # loopback becomes an ``outbound`` event (CPython >= 3.8).
        if not args.agent:  # the agent installed it already
            _watch_outbound()
        layers.start(args.layer)  # like the agent, some must patch Flask before its import

    import gevent
    from gevent.pywsgi import WSGIServer

    from .connections import observed
    from .middleware import outermost

    handler = handlers.current()  # chosen by missing_dependencies()
    handler_class = handler.handler_class()
    application, flask_app = build_application(args.hello_goodbyer, args.layer,
                                               with_flask_app=True)
    layer_active = layers.evidence(args.layer, flask_app, application)
    # Outermost: request_done and connection_done (app.connections) watch the handler
    # as the server runs it, rejections logged or not.
    server = WSGIServer((args.host, args.port), application,
                        handler_class=observed(logging_rejections(handler_class)
                                               if handler.logs_rejections else handler_class),
                        log=sys.stderr, error_log=sys.stderr)
    # The agent wraps the application WSGIServer is given (its gevent hook);
    # the probe must see what the handler sees, so it goes on afterwards.
    server.application = outermost(server.application)
    try:
        server.start()
    except socket.error as exc:
        if exc.errno == errno.EADDRINUSE:
            print("error: %s:%d is already in use; choose another --port (0 picks a free one) "
                  "or stop the process holding it" % (args.host, args.port), file=sys.stderr)
            return EXIT_USAGE
        raise

    def stop(signum):
        # Stop first: if the harness died before signalling us, stdout is a
        # broken pipe and emit() raises; the server must stop all the same.
        gevent.spawn(server.stop, timeout=STOP_TIMEOUT)
        try:
            emit("stopping", signal=signum)
        except (IOError, OSError):
            pass

    # gevent >= 1.5 renamed gevent.signal to gevent.signal_handler.
    install = getattr(gevent, "signal_handler", None) or gevent.signal
    for signum in (signal.SIGTERM, signal.SIGINT):
        install(signum, stop, signum)
    if args.watch_stdin:  # after the handlers: EOF becomes the same graceful SIGTERM
        from .lifeline import watch_stdin

        watch_stdin()

    host, port = server.address[:2]
    emit_listening(host, port, launcher="app", agent=args.agent, agent_active=agent_active,
                   rum=args.rum, hello_goodbyer=args.hello_goodbyer, layer=args.layer,
                   layer_active=layer_active, monkey_patched=_monkey_patched(),
                   handler=handlers.describe(handler, handler_class,
                                             versions_of(handler.distributions)))
    server.serve_forever()
    try:
        emit("stopped")
    except (IOError, OSError):  # the harness is gone (app.lifeline): nobody to tell
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
