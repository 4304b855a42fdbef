"""``python -m app.forkserver``: one process that imports what a server imports, then forks
a ``python -m app`` per request, so that each cell still gets a server process of its own
without paying the interpreter's start and the imports each time.

What is imported here is what ``python -m app`` would import before its own options act,
in the same order: without the agent, the handler, gevent's WSGI server and Flask; with
the agent, only the agent's package (developer mode first, as app.agent does), since
Flask must be imported after the agent's ``initialize``, which each child does itself.
Nothing here starts a thread, a hub or a socket: the child starts from a clean process.

The harness (tests/harness/forked.py) talks over fd 0, a SOCK_SEQPACKET socket: a JSON
packet ``{"argv": [...]}`` followed by three one-byte packets carrying the child's stdin,
stdout and stderr (SCM_RIGHTS); the answer is ``{"spawned": pid}``, and later
``{"exited": pid, "status": code}`` (negative: the signal), the child being ours to reap.
End of file on fd 0 (the harness closed it, or is gone) ends this process; its children
stop on their own stdin's end of file (app/lifeline.py).
"""
from __future__ import absolute_import

import argparse
import errno
import json
import os
import select
import signal
import socket
import sys

FDS = 3  # the child's stdin, stdout, stderr
PACKET = 65536


def preload(agent, handler):
    from . import handlers, layers  # noqa: F401  (what app.__main__ imports first)

    if agent:
        os.environ["NEW_RELIC_DEVELOPER_MODE"] = "true"  # before the import: app.agent
        import newrelic.agent  # noqa: F401

        return
    handlers.use(handler).handler_class()
    import gevent  # noqa: F401
    import gevent.pywsgi  # noqa: F401

    from . import connections, middleware, stats, web  # noqa: F401


def _recv_fd(ctl):
    if hasattr(socket, "recv_fds"):  # CPython >= 3.9
        _, fds, _, _ = socket.recv_fds(ctl, 1, 1)
        return fds[0]
    if hasattr(ctl, "recvmsg"):  # CPython 3.3-3.8
        import array

        fds = array.array("i")
        _, ancillary, _, _ = ctl.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
        fds.frombytes(ancillary[0][2][:fds.itemsize])
        return fds[0]
    import _multiprocessing  # CPython 2.7: one byte and one descriptor a message

    return _multiprocessing.recvfd(ctl.fileno())


def _send(ctl, **message):
    ctl.send(json.dumps(message).encode("utf-8"))


def _reap(ctl):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except OSError as exc:  # no child left
            if exc.errno == errno.ECHILD:
                return
            raise
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        _send(ctl, exited=pid, status=code)


def serve(ctl, wakeup):
    """Fork a child per request; return its argv in the child, None at end of file."""
    while True:
        try:
            readable = select.select([ctl, wakeup], [], [])[0]
        except (select.error, OSError) as exc:  # EINTR on CPython 2.7
            if exc.args[0] == errno.EINTR:
                continue
            raise
        if wakeup in readable:
            os.read(wakeup, 4096)
            _reap(ctl)
        if ctl not in readable:
            continue
        packet = ctl.recv(PACKET)
        if not packet:
            return None
        argv = json.loads(packet.decode("utf-8"))["argv"]
        fds = [_recv_fd(ctl) for _ in range(FDS)]
        pid = os.fork()
        if pid == 0:
            _become_child(ctl, wakeup, fds)
            return argv
        for fd in fds:
            os.close(fd)
        _send(ctl, spawned=pid)


def _become_child(ctl, wakeup, fds):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    ctl.close()
    os.close(wakeup)
    os.setsid()  # a group of its own, as the harness gives every server
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.forkserver",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--agent", action="store_true", help="the servers start the agent")
    parser.add_argument("--handler", default=None, help="the servers' handler (app/handlers.py)")
    args = parser.parse_args(argv)
    ctl = socket.fromfd(0, socket.AF_UNIX, socket.SOCK_SEQPACKET)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the socket lives on as ``ctl``; fd 0 is the children's stdin slot
    os.close(null)
    from . import handlers

    preload(args.agent, args.handler or handlers.DEFAULT)
    wakeup, wakeup_w = os.pipe()
    for fd in (wakeup, wakeup_w):
        _nonblocking(fd)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    child_argv = serve(ctl, wakeup)
    if child_argv is None:
        return 0
    os.close(wakeup_w)
    os.environ["APP_FORKED_FROM"] = str(os.getppid())
    from .__main__ import main as app_main

    sys.argv = ["python -m app"] + child_argv
    return app_main(child_argv)


def _nonblocking(fd):
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


if __name__ == "__main__":
    sys.exit(main())
