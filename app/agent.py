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
