"""``GET /_stats``: the server's own resource figures, as JSON and as an event.

The reliability tests compare these before and after a burst of connections:
open file descriptors and live greenlets must return to their baseline, and
the peak RSS is reported beside the load figures.  Linux only (``/proc``);
elsewhere the missing figures are ``None``.
"""
from __future__ import absolute_import

import gc
import json
import os
import threading

from .events import emit

try:
    import resource
except ImportError:  # not POSIX
    resource = None


def _count(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def _rss_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        pass
    return None


def _root(glet):
    while glet.parent is not None:
        glet = glet.parent
    return glet


def _greenlets():
    """(alive, total) greenlet objects of the serving thread, after a full collection.

    Other OS threads have greenlets too (gevent's threadpool workers each run a
    hub of their own) and come and go on their own schedule: counted, they made
    the figure drop by two whenever an idle worker thread retired.  Only
    greenlets whose parent chain ends at this thread's main greenlet count.
    """
    try:
        import greenlet
    except ImportError:
        return None, None
    gc.collect()
    main = _root(greenlet.getcurrent())
    alive = total = 0
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet) and _root(obj) is main:
            total += 1
            if not obj.dead:
                alive += 1
    return alive, total


def snapshot():
    alive, total = _greenlets()
    peak = None
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "fds": _count("/proc/self/fd"),
        "greenlets": alive,
        "greenlet_objects": total,
        "threads": threading.active_count(),
        "os_threads": _count("/proc/self/task"),
        "rss_kib": _rss_kib(),
        "peak_rss_kib": peak,
    }


def stats_app(environ, start_response):
    figures = snapshot()
    emit("stats", rid=environ.get("app.rid"), **figures)
    body = json.dumps(figures, sort_keys=True).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
    return [body]
