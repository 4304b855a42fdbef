"""WSGI middleware: the seed's HelloGoodbyer, and the probe that watches close().

HelloGoodbyer is deliberately lazy (a generator, as in the seed): the wrapped
application is not even called until the server iterates the result.  That is
the whole point of the experiment, so it must stay a generator.
"""
from __future__ import absolute_import

import itertools
import sys

from .events import emit


class HelloGoodbyer(object):
    """Replaces b"Hello" with b"Goodbye" in response bodies."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self._respond(environ, start_response)

    def _respond(self, environ, start_response):
        emit("hellos_to_goodbyes", message="changing hellos to goodbyes",
             rid=environ.get("app.rid"), path=environ.get("PATH_INFO"))

        def start_without_length(status, headers, exc_info=None):
            # The body changes length, so the inner Content-Length would lie.
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            return start_response(status, headers, exc_info)

        result = self.app(environ, start_without_length)
        try:
            for chunk in result:
                yield chunk.replace(b"Hello", b"Goodbye")
        finally:
            # PEP 3333: close() reaches the inner iterable however we end,
            # exhausted, closed early (GeneratorExit) or raising.
            close = getattr(result, "close", None)
            if close is not None:
                close()


class IterableProbe(object):
    """Outermost layer: numbers requests and records every close() the server makes.

    Calls the application eagerly, exactly as the server would, and returns a
    plain object, so it neither hides nor adds laziness.
    """

    _ids = itertools.count(1)

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        rid = environ["app.rid"] = next(self._ids)
        # The query string names the client, so a harness can tell which
        # events belong to which connection.
        emit("request", rid=rid, method=environ.get("REQUEST_METHOD"),
             path=environ.get("PATH_INFO"), query=environ.get("QUERY_STRING", ""),
             upgrade=environ.get("HTTP_UPGRADE", ""))
        return _ProbedIterable(self.app(environ, start_response), environ)


class _ProbedIterable(object):
    def __init__(self, inner, environ):
        self.inner = inner
        self.rid = environ["app.rid"]
        self.path = environ.get("PATH_INFO")
        self.closes = 0

    def __iter__(self):
        return iter(self.inner)

    def close(self):
        self.closes += 1
        emit("iterable_closed", rid=self.rid, path=self.path, count=self.closes)
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def outermost(application):
    """What the handler is given: the probe outside every wrapper, and, with the agent
    loaded, the agent's watch (app.agent.monitored) just outside the agent's own."""
    if "newrelic" in sys.modules:
        from .agent import monitored

        application = monitored(application)
    return IterableProbe(application)
