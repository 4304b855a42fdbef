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
import threading

GRACE = 1.5  # s between our SIGTERM and a hard exit, inside the harness's 2 s bound


def _watch(fd):
    try:
        while os.read(fd, 4096):  # the harness never writes; data is ignored
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    # A real OS thread, not a greenlet: it sleeps while the hub stops the server.
    threading.Event().wait(GRACE)
    os._exit(3)


def watch_stdin(fd=0):
    """Start a daemon thread that ends this process once ``fd`` reaches EOF."""
    thread = threading.Thread(target=_watch, args=(fd,), name="lifeline")
    thread.daemon = True
    thread.start()
    return thread
