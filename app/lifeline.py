"""Stop the server when the harness that started it is gone.

A harness that is SIGKILLed cannot stop its servers.  It gives each one a pipe
as stdin and never writes to it; the kernel closes the pipe's write end when
the harness dies, however it dies, and a read here returns EOF.  The server
then signals itself with SIGTERM, so it stops the same graceful way as when the
harness asks (``python -m app``'s handler, gunicorn's master alike).

Opt-in (``--watch-stdin`` / ``APP_WATCH_STDIN=1``): a server started by hand
with stdin at /dev/null would otherwise stop at once.
"""
from __future__ import absolute_import

import os
import signal
import sys

GRACE = 1.5  # s between our SIGTERM and a hard exit, inside the harness's 2 s bound


def _watch(fd):
    try:
        while os.read(fd, 4096):  # the harness never writes; data is ignored
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    # A real OS thread, not a greenlet: it sleeps while the hub stops the server.
    _original("time", "sleep")(GRACE)
    os._exit(3)


def _original(module, name):
    """``module.name`` as the standard library has it, even when gevent has monkey-patched
    it (``python -m app --monkey-patch``): a blocking read in a greenlet would block the hub."""
    try:
        from gevent import monkey
    except ImportError:
        return getattr(__import__(module), name)
    return monkey.get_original(module, name)


def watch_stdin(fd=0):
    """Start an OS thread that ends this process once ``fd`` reaches EOF; its id."""
    start = _original("thread" if sys.version_info[0] == 2 else "_thread", "start_new_thread")
    return start(_watch, (fd,))
