"""``python -m tests.bench.profile_start [--agent] --out FILE``: where a server's start goes.

Runs ``app.__main__.main()`` (imports, agent start, Flask app, listening
socket) under pyinstrument in this process, and stops the server as soon as it
has written its readiness line (a SIGTERM to itself, handled as in any cell).
Run it with the server's interpreter.  Writes pyinstrument's text profile to
``--out`` and, on stdout, one JSON object: wall seconds to the readiness
line, and the profile's time by owner, each third-party distribution's
subtree counted once at its outermost frame ("ours" is app/ and tests/;
"stdlib" is the interpreter's own modules, e.g. importlib's machinery).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import sysconfig
import time
from pathlib import Path

from pyinstrument import Profiler

from tests.harness.paths import ROOT

STDLIB = sysconfig.get_paths()["stdlib"]
INTERVAL = 0.0005  # s between samples


def owner(path):
    if not path or path.startswith("<"):
        return "stdlib"
    if path.startswith(str(ROOT / "app")) or path.startswith(str(ROOT / "tests")):
        return "ours"
    marker = os.sep + "site-packages" + os.sep
    if marker in path:
        return path.split(marker, 1)[1].split(os.sep, 1)[0].split(".", 1)[0]
    if path.startswith(STDLIB):
        return "stdlib"
    return "other"


def by_owner(frame, totals, claimed=None):
    """Third-party subtrees go to their outermost distribution; the rest, self time."""
    mine = owner(frame.file_path)
    if claimed is None and mine not in ("ours", "stdlib", "other"):
        totals[mine] = totals.get(mine, 0.0) + frame.time
        claimed = mine
    if claimed is None:
        totals[mine] = totals.get(mine, 0.0) + frame.total_self_time
    for child in frame.children:
        by_owner(child, totals, claimed)
    return totals


class _StopWhenListening(io.TextIOBase):
    """stdout that SIGTERMs this process once the readiness line has gone through."""

    def __init__(self, inner):
        self.inner = inner
        self.ready_at = None

    def write(self, text):
        self.inner.write(text)
        if self.ready_at is None and '"event": "listening"' in text:
            self.ready_at = time.perf_counter()
            os.kill(os.getpid(), signal.SIGTERM)
        return len(text)

    def flush(self):
        self.inner.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile_start")
    parser.add_argument("--agent", action="store_true", help="--agent --rum for the server")
    parser.add_argument("--out", required=True, help="pyinstrument's text profile")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    stdout = sys.stdout
    sys.stdout = _StopWhenListening(io.StringIO())
    profiler = Profiler(interval=INTERVAL)
    started = time.perf_counter()
    profiler.start()
    try:
        from app.__main__ import main as serve

        status = serve(
            ["--port", "0", "--host", "127.0.0.1"] + (["--agent", "--rum"] if args.agent else [])
        )
    finally:
        profiler.stop()
        listening = sys.stdout.ready_at
        sys.stdout = stdout
    Path(args.out).write_text(profiler.output_text(unicode=False, color=False))
    totals = by_owner(profiler.last_session.root_frame(), {})
    print(
        json.dumps(
            {
                "agent": args.agent,
                "status": status,
                "to_listening": round(listening - started, 3) if listening else None,
                "profiled": round(profiler.last_session.duration, 3),
                "by_owner": {
                    k: round(v, 3)
                    for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
                    if v >= 0.002 or k == "ours"
                },
                "profile": str(args.out),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
