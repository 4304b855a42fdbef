"""What the server did with each request and each connection, as events.

``request_done`` (rid, query, keep_alive, upgrade, status): the handler's work for one request
has returned (gevent.pywsgi's ``handle_one_request``: the application called, its
result iterated and closed, whatever the websocket handler did with the upgrade).
``keep_alive`` says whether the server then reads another request from the same
connection (it has not closed it).  ``connection_done`` (rids, ended): the server is
done with the connection and has closed its socket; ``ended`` says why the loop
stopped: ``closed`` (the server chose to, after a request), ``error_response`` (it
answered a malformed request and closed), ``eof`` (no further request came: the peer
closed or the read failed) or ``exception``.

A harness proves a negative from these: a layer that had not finished a request when
its ``request_done`` came did not finish it with the request, and a websocket's request
done with ``keep_alive`` leaves the server reading the next HTTP request off that
connection, so it closes TCP only once the peer does.  The subclass goes on
outermost, around whatever handler class the server runs (gevent-websocket, gevent-ws,
gevent's own for flask-sock, each possibly wrapped by app.__main__.logging_rejections)
and it calls the handler's own methods unchanged: it only observes.  gevent 1.1.2
(CPython 2.7) and today's gevent share both methods' contracts.
"""
from __future__ import absolute_import

from .events import emit


def _text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def _emit(event, **fields):
    try:
        emit(event, **fields)
    except (IOError, OSError):  # the harness is gone (app.lifeline): nobody to tell
        pass


_RAISED = object()  # handle_one_request did not return


def _ended(result, read):
    """Why the connection loop stops after this request (None: it goes on)."""
    if result is _RAISED:
        return "exception"
    if result is True:
        return None
    if result is None:
        return "closed" if read else "eof"
    return "error_response"  # (status, body): gevent answers and closes


def observed(handler_class):
    """``handler_class`` that emits ``request_done`` and ``connection_done``."""

    class ObservedHandler(handler_class):
        def handle(self):
            self._observed_rids = []
            self._observed_end = "exception"
            try:
                return super(ObservedHandler, self).handle()
            finally:
                _emit("connection_done", rids=self._observed_rids, ended=self._observed_end)

        def handle_one_request(self):
            before = self.__dict__.get("environ")
            result = _RAISED
            try:
                result = super(ObservedHandler, self).handle_one_request()
            finally:
                environ = self.__dict__.get("environ")
                # The same environ as before: no new request was read (EOF, a reset,
                # an unreadable request line).
                read = environ is not None and environ is not before
                if read:
                    rid = environ.get("app.rid")
                    self._observed_rids.append(rid)
                    # the query too: an upgrade the handler refuses never reaches the
                    # application, so it has no rid to be told apart by
                    _emit("request_done", rid=rid, query=_text(environ.get("QUERY_STRING", "")),
                          keep_alive=result is True,
                          upgrade=_text(environ.get("HTTP_UPGRADE", "")),
                          status=_text(getattr(self, "status", None)))
                self._observed_end = _ended(result, read) or self._observed_end
            return result

    ObservedHandler.__name__ = "Observed" + handler_class.__name__
    return ObservedHandler
