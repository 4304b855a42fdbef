"""Start the New Relic agent the way its users do, but in developer mode.

Must run before Flask is imported: the agent instruments Flask through import
hooks, so a Flask imported first would be served uninstrumented.
"""
from __future__ import absolute_import

import os
import socket
import sys

from .events import emit

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "newrelic.ini")

REGISTER_TIMEOUT = 10.0  # seconds; developer mode registers locally, at once

_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "", None)


def start(rum):
    # Developer mode must be set before newrelic is imported: it decides at
    # import whether the agent may ever talk to a collector.
    os.environ["NEW_RELIC_DEVELOPER_MODE"] = "true"
    _watch_outbound()
    import newrelic.agent

    newrelic.agent.initialize(CONFIG, "rum_on" if rum else "rum_off")
    # Until the agent's application is registered, requests are not monitored
    # and RUM is not applied: the first cell request would see no agent at
    # all.  Register before the server reports ready.
    application = newrelic.agent.register_application(timeout=REGISTER_TIMEOUT)
    return bool(application.active)


def _is_loopback(address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes) and not isinstance(host, str):  # a name as bytes (3.x)
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):  # None: the local host
        return True
    if host.startswith("::ffff:"):  # IPv4-mapped IPv6
        host = host[len("::ffff:"):]
    if host.startswith("127."):  # 127.0.0.0/8, numeric only: "127.0.0.1.example" is a name
        return all(part.isdigit() for part in host.split("."))
    return host in _LOCAL_NAMES


def _watch_outbound():
    """Record every connect or name lookup outside loopback (CPython >= 3.8).

    The proof that developer mode never reaches a collector: the harness
    asserts that no ``outbound`` event appears.  Audit events cover connect,
    sendto/sendmsg with an address, and every name lookup; a send() on a
    socket connected earlier has none, but its connect was recorded.  CPython
    2.7 has no audit hooks; there tests/matrix/test_no_network.py traces the
    server's system calls instead (strace), as it does on 3.x as a cross-check.
    """
    if not hasattr(sys, "addaudithook"):
        return

    def hook(name, args):
        if name == "socket.connect":
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                # A UDP connect sends no packet (the agent uses one to learn
                # its own address); it is recorded apart from real attempts.
                kind = "udp_route_lookup" if sock.type == socket.SOCK_DGRAM else "tcp_connect"
                emit("outbound", call=name, kind=kind, address=repr(address))
        elif name in ("socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if (address is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and not _is_loopback(address)):
                emit("outbound", call=name, kind="datagram_send", address=repr(address))
        elif name in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                      "socket.getnameinfo"):
            if not _is_loopback(args[0]):
                emit("outbound", call=name, kind="dns_lookup", address=repr(args[0]))

    sys.addaudithook(hook)


LAYER = "newrelic"  # the agent as a request layer (app.layers' layer_finished event)
_tracked = {}  # id(transaction) -> the request id of the request it monitors
_exit_wrapped = []


def track_transactions():
    """The agent's end-of-request work as a ``layer_finished`` event, like app.layers'.

    The agent's web transaction ends in ``Transaction.__exit__`` (which records it
    for the harvest): its WSGI wrapper calls that from the close() of the iterable
    it returns, so the transaction ends only if the server calls close().  Which
    transaction is which request's is told by ``monitored`` below.
    A transaction never ended is ended when it is garbage collected
    (``Transaction.__del__``): that event says so (``fallback``).
    """
    from newrelic.api.transaction import Transaction

    from .layers import finished

    if _exit_wrapped:
        return
    original = Transaction.__exit__

    def __exit__(self, exc, value, tb):
        try:
            return original(self, exc, value, tb)
        finally:
            if id(self) in _tracked:
                # Transaction.__del__ ends a transaction nobody ended: the
                # collector's timing, not the request's (``fallback``).
                dead = bool(getattr(self, "_dead", False))
                finished(LAYER, _tracked.pop(id(self)),
                         "transaction ended by garbage collection" if dead
                         else "transaction recorded", fallback=dead)

    Transaction.__exit__ = __exit__
    _exit_wrapped.append(original)


def _running(transaction):
    from newrelic.api.transaction import Transaction

    return transaction is not None and (
        getattr(transaction, "_state", None) != getattr(Transaction, "STATE_STOPPED", ()))


def monitored(application):
    """``application`` (the agent's WSGI wrapper, which newrelic puts around the
    application gevent's WSGIServer is given) seen from outside.

    Each request's ``layer_entered``, then, once the agent's wrapper has returned, which
    transaction it started for the request, or ``layer_skipped`` if it started none
    (newrelic >= 2.68.0.50 starts none for a websocket upgrade, proven by
    history(newrelic)).  Decided here, not inside Flask: when lazy layers keep the
    application from being called, nothing inside it runs.  The wrapper enters its
    transaction before calling the application and exits it in close(), so the one
    current when it returns is this request's; one that is current but stopped is an
    earlier request's (newrelic 14 under gevent: when complete_root() raises, on
    asyncio.all_tasks() with no loop, the trace cache keeps that root as the current
    transaction).  Anything but the agent's wrapper is returned as it is: then no agent
    cell sees the agent entered, and says so.
    """
    from newrelic.api.transaction import current_transaction

    from .layers import entered
    from .layers._tag import RID_KEY

    if type(application).__module__.split(".")[0] != "newrelic":
        return application

    def monitor(environ, start_response):
        entered(LAYER, environ)
        earlier = current_transaction()
        result = application(environ, start_response)
        transaction = current_transaction()
        rid = environ.get(RID_KEY)
        if _running(transaction) and transaction is not earlier:
            _tracked[id(transaction)] = rid
        else:
            emit("layer_skipped", layer=LAYER, rid=rid, why="no transaction for this request" + (
                "" if transaction is None else " (current_transaction() is an earlier "
                "request's, already stopped)"))
        return result

    return monitor
