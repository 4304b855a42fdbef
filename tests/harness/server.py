"""Run ``python -m app`` as a real separate process and read its JSON events.

Every wait is bounded and names its bound; a failure quotes the server's last
events and stderr so that a red test says what the server was doing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0  # s from spawn to the "listening" line (agent start included)
STOP_TIMEOUT = 5.0  # s from SIGTERM to exit; the server itself gives handlers 1 s


class ServerError(AssertionError):
    pass


class Server:
    """One server process; use as a context manager so it never outlives a test."""

    def __init__(self, python=None, *, agent=False, rum=False, hello_goodbyer=False,
                 port=0, log_dir=None, name="server"):
        self.python = python or sys.executable
        self.argv = [self.python, "-m", "app", "--host", "127.0.0.1", "--port", str(port),
                     "--agent" if agent else "--no-agent", "--rum" if rum else "--no-rum",
                     "--hello-goodbyer" if hello_goodbyer else "--no-hello-goodbyer"]
        self.name = name
        self.log_dir = Path(log_dir) if log_dir else None
        self.events: list[dict] = []
        self.raw_stdout: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None
        self.started_at = None
        self.ready_after = None

    # -- lifecycle -------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, wait=True):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # A server's environment must not decide the cell: flags do.
        for key in ("APP_AGENT", "APP_RUM", "APP_HELLO_GOODBYER", "APP_PORT", "APP_HOST"):
            env.pop(key, None)
        self.stderr_path = self._log_path("stderr")
        self._stderr = open(self.stderr_path, "w+b")
        self.started_at = time.monotonic()
        # A session of its own: the server's process group is ours to signal,
        # and a Ctrl-C aimed at pytest does not reach it first.
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            self.ready = self.wait_for(lambda e: e["event"] == "listening", READY_TIMEOUT,
                                       "the readiness line {'event': 'listening'}")
            self.ready_after = time.monotonic() - self.started_at
        return self

    def _log_path(self, what):
        if self.log_dir is None:
            import tempfile

            self.log_dir = Path(tempfile.mkdtemp(prefix="server-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{self.name}.{what}.log"

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.raw_stdout.append(text)
                try:
                    event = json.loads(text)
                except ValueError:
                    event = {"event": "unparsed_stdout", "line": text}
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def stop(self):
        """SIGTERM, bounded wait, then SIGKILL the group we created. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        if self.proc.poll() is None or self._group_alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def _group_alive(self):
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    # -- observation -----------------------------------------------------
    @property
    def url(self):
        return self.ready["url"]

    @property
    def ws_url(self):
        return "ws" + self.url[len("http"):]

    @property
    def versions(self):
        return self.ready["versions"]

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                remaining = deadline - time.monotonic()
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise ServerError(self.explain(f"expected {what}, but the server exited "
                                                   f"with status {self.proc.returncode}"))
                if remaining <= 0:
                    raise ServerError(self.explain(f"expected {what} within {timeout:.1f} s "
                                                   "(bound), not seen"))
                self._changed.wait(min(remaining, 0.5))

    def wait_stopped(self):
        """Stop gracefully and return every event; the last must be 'stopped'."""
        self.stop()
        return list(self.events)

    def stderr_text(self, limit=4000):
        try:
            data = Path(self.stderr_path).read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def explain(self, message, events=12):
        tail = "\n".join("    " + json.dumps(e, sort_keys=True) for e in self.events[-events:])
        stderr = "\n".join("    " + line for line in self.stderr_text(2000).splitlines()[-20:])
        return (f"{self.name}: {message}\n  command: {' '.join(self.argv)}\n"
                f"  last server events:\n{tail or '    (none)'}\n"
                f"  server stderr (tail, {self.stderr_path}):\n{stderr or '    (empty)'}")
