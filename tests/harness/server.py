"""Run a server of the app as a real separate process and read its JSON events.

Two ways to start it (``launcher``): ``python -m app`` (gevent's WSGIServer with
the agent started in code), or gunicorn with gevent-websocket's worker and the
agent started by ``newrelic-admin run-program``, configured by
app/gunicorn_conf.py to emit the same events.  Readiness, events, stop and
the stdin lifeline are the same for both.

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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from .forked import ForkedProcess, ForkServer, Key
from .paths import ROOT

READY_TIMEOUT = 20.0  # s from spawn to the "listening" line (agent start included)
STOP_TIMEOUT = 5.0  # s from SIGTERM to exit; the server itself gives handlers 1 s
HTTP_TIMEOUT = 5.0  # s for a plain GET (the page)
STATS_TIMEOUT = 10.0  # s for GET /_stats (it runs a full gc.collect() in the server)
LAUNCHERS = ("app", "gunicorn")
GUNICORN_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
# A cell's environment must not decide it: flags (or, for gunicorn, the
# variables set here) do.
CELL_ENVIRON = (
    "APP_AGENT",
    "APP_RUM",
    "APP_HELLO_GOODBYER",
    "APP_LAYER",
    "APP_MONKEY_PATCH",
    "APP_PORT",
    "APP_HOST",
    "APP_HANDLER",
    "NEW_RELIC_CONFIG_FILE",
    "NEW_RELIC_ENVIRONMENT",
    "NEW_RELIC_DEVELOPER_MODE",
)


class ServerError(AssertionError):
    pass


class Server:
    """One server process; use as a context manager so it never outlives a test."""

    running: set[Server] = set()  # started and not yet stopped, for signal_all()

    def __init__(
        self,
        python: str | None = None,
        *,
        agent: bool = False,
        rum: bool = False,
        hello_goodbyer: bool = False,
        port: int = 0,
        log_dir: str | Path | None = None,
        name: str = "server",
        launcher: str = "app",
        handler: str | None = None,
        layer: str | None = None,
        monkey_patch: bool = False,
        fork: bool = False,
    ) -> None:
        self.python = python or sys.executable
        if fork and (launcher != "app" or layer or monkey_patch):
            raise ValueError(
                "fork=True forks `python -m app` from a process that imported it without "
                "a layer or gevent's monkey-patching (app/forkserver.py): start this one "
                "as a process of its own (fork=False)"
            )
        # Forked from app.forkserver (tests/harness/forked.py): the same argv and
        # environment, without the interpreter's start and the imports.
        self.fork = fork
        self.agent = agent
        if launcher not in LAUNCHERS:
            raise ValueError(f"launcher={launcher!r}: expected one of {LAUNCHERS}")
        if layer and launcher != "app":
            raise ValueError(
                f"layer={layer!r} needs launcher='app' (`python -m app --layer`); "
                f"the {launcher} launcher serves no layer"
            )
        self.launcher = launcher
        if handler is not None and launcher != "app":
            raise ValueError(
                f"handler={handler!r}: only `python -m app` takes a handler "
                f"(launcher='app'), not launcher={launcher!r}"
            )
        self.handler = handler  # None: the app's default (gevent-websocket)
        self.argv, self.environ = (self._gunicorn if launcher == "gunicorn" else self._app)(
            port, agent, rum, hello_goodbyer
        )
        if layer:  # a request layer of app.layers, set up as its docs say
            self.argv += ["--layer", layer]
        if monkey_patch:  # gevent.monkey.patch_all() first (the layer sessions)
            self.argv += ["--monkey-patch"]
        self.name = name
        self.log_dir = Path(log_dir) if log_dir else None
        self.events: list[dict[str, Any]] = []
        self._watchers: list[Callable[[dict[str, Any]], None]] = []
        self.raw_stdout: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._exited_unasked: int | None = None  # its exit status, if it ended before stop()
        self.ready: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.ready_after: float | None = None

    def _app(
        self,
        port: int,
        agent: bool,
        rum: bool,
        hello_goodbyer: bool,
    ) -> tuple[list[str], dict[str, str]]:
        return [
            self.python,
            "-m",
            "app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--agent" if agent else "--no-agent",
            "--rum" if rum else "--no-rum",
            "--hello-goodbyer" if hello_goodbyer else "--no-hello-goodbyer",
            "--watch-stdin",
            *(["--handler", self.handler] if self.handler else []),
        ], {}

    def _gunicorn(
        self,
        port: int,
        agent: bool,
        rum: bool,
        hello_goodbyer: bool,
    ) -> tuple[list[str], dict[str, str]]:
        """gunicorn as users deploy it; the agent, if any, by newrelic-admin and its config.

        The scripts are the server environment's own (beside its interpreter).
        """
        scripts = Path(self.python).parent
        argv = [
            str(scripts / "gunicorn"),
            "-c",
            "app/gunicorn_conf.py",
            "-k",
            GUNICORN_WORKER,
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "app.wsgi:" + ("hello_goodbyer" if hello_goodbyer else "application"),
        ]
        environ = {"APP_WATCH_STDIN": "1", "NEW_RELIC_ENVIRONMENT": "rum_on" if rum else "rum_off"}
        if agent:
            argv = [str(scripts / "newrelic-admin"), "run-program", *argv]
            environ.update(
                NEW_RELIC_CONFIG_FILE=str(ROOT / "app" / "newrelic.ini"),
                NEW_RELIC_DEVELOPER_MODE="true",
            )
        return argv, environ

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            # __exit__ does not run when __enter__ raises: a Ctrl-C or a
            # readiness timeout during start() must not leave the server behind.
            self.stop()
            raise
        return self

    def __exit__(
        self,
        *exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, wait: bool = True) -> Server:
        env = {k: v for k, v in os.environ.items() if k not in CELL_ENVIRON}
        env.update(self.environ, PYTHONUNBUFFERED="1")
        self.stderr_path = self._log_path("stderr")
        self._stderr: IO[bytes] = open(self.stderr_path, "w+b")
        # The events as they arrive, one JSON line each: evidence that
        # survives this process (and lets another process watch a server).
        self.events_path = self._log_path("events")
        self._events_log = open(self.events_path, "w", encoding="utf-8")
        self.started_at = time.monotonic()
        # A session of its own: the server's process group is ours to signal,
        # and a Ctrl-C aimed at pytest does not reach it first.  stdin is a pipe
        # we never write to: when this process dies, even by SIGKILL, the server
        # reads EOF and stops itself (app/lifeline.py).  A forked server gets the same.
        if self.fork:
            assert self.log_dir is not None  # _log_path() chose it
            forks = ForkServer.of(Key(self.python, self.agent, self.handler), env, self.log_dir)
            self.proc = forks.spawn(self.argv[3:], self._stderr)  # after `python -m app`
        else:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
            )
        Server.running.add(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            self.ready = self.wait_for(
                lambda e: e["event"] == "listening",
                READY_TIMEOUT,
                "the readiness line {'event': 'listening'}",
            )
            self.ready_after = time.monotonic() - self.started_at
        return self

    def _log_path(self, what: str) -> Path:
        if self.log_dir is None:
            import tempfile

            self.log_dir = Path(tempfile.mkdtemp(prefix="server-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{self.name}.{what}.log"

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None  # start() set them
        for line in iter(self.proc.stdout.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            try:
                self._events_log.write(text + "\n")
                self._events_log.flush()
            except ValueError:  # closed by stop() after its bounded join
                pass
            with self._changed:
                self.raw_stdout.append(text)
                try:
                    event = json.loads(text)
                except ValueError:
                    event = {"event": "unparsed_stdout", "line": text}
                self.events.append(event)
                for watcher in self._watchers:
                    watcher(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def stop(self) -> int | None:
        """SIGTERM, bounded wait, then SIGKILL the group we created. Idempotent."""
        if self.proc is None:
            return None
        if self not in Server.running:  # stopped already
            return self.proc.returncode
        self._exited_unasked = self.proc.poll()
        try:
            if self._exited_unasked is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
                except ProcessLookupError:
                    pass
        finally:
            # Also when a second Ctrl-C interrupts the graceful wait above.
            if self.proc.poll() is None or self._group_alive():
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    raise ServerError(
                        self.explain(f"still running {STOP_TIMEOUT:.1f} s (bound) after SIGKILL")
                    ) from None
        Server.running.discard(self)
        reader = getattr(self, "_reader", None)  # absent if interrupted right after spawn
        if reader is not None:
            reader.join(STOP_TIMEOUT)
        assert self.proc.stdout is not None and self.proc.stdin is not None  # both PIPE
        self.proc.stdout.close()
        self.proc.stdin.close()
        self._stderr.close()
        self._events_log.close()
        return self.proc.returncode

    @property
    def died(self) -> int | None:
        """Its exit status if the process ended without being asked to (a crash, an
        abort), else None."""
        if self.proc is None:
            return None
        if self in Server.running:
            return self.proc.poll()
        return self._exited_unasked

    @classmethod
    def signal_all(cls, signum: int = signal.SIGTERM) -> None:
        """Signal every running server's group at once, without waiting (for a signal
        handler: nox SIGKILLs pytest 0.2 s after its SIGTERM, teardown may come too late)."""
        for server in list(cls.running):
            assert server.proc is not None  # running: started
            try:
                os.killpg(server.proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _group_alive(self) -> bool:
        assert self.proc is not None  # only stop() asks, after its own check
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    # -- observation -----------------------------------------------------
    @property
    def url(self) -> str:
        assert self.ready is not None, f"{self.name}: not ready (start() with wait)"
        return cast(str, self.ready["url"])  # the server's readiness line (app/__main__.py)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    @property
    def versions(self) -> dict[str, str | None]:
        assert self.ready is not None, f"{self.name}: not ready (start() with wait)"
        return cast("dict[str, str | None]", self.ready["versions"])  # app/__main__.py versions()

    def watch(self, watcher: Callable[[dict[str, Any]], None]) -> None:
        """Call ``watcher`` with every event so far and each one as it arrives (on the
        reader's thread, holding its lock: it must not block)."""
        with self._changed:
            for event in self.events:
                watcher(event)
            self._watchers.append(watcher)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        assert self.proc is not None, f"{self.name}: wait_for before start()"
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
                    raise ServerError(
                        self.explain(
                            f"expected {what}, but the server exited "
                            f"with status {self.proc.returncode}"
                        )
                    )
                if remaining <= 0:
                    raise ServerError(
                        self.explain(f"expected {what} within {timeout:.1f} s (bound), not seen")
                    )
                self._changed.wait(min(remaining, 0.5))

    def get(self, path: str = "/", timeout: float = HTTP_TIMEOUT) -> tuple[int, str]:
        """(status, text) of a plain HTTP GET; no answer is a ServerError quoting the server."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except OSError as exc:  # URLError, timeout, reset: say what the server was doing
            raise ServerError(
                self.explain(f"GET {path}: no answer within {timeout:.1f} s (bound): {exc!r}")
            ) from None

    def stats(self, timeout: float = STATS_TIMEOUT) -> dict[str, Any]:
        """The server's own figures (GET /_stats, app/stats.py): fds, greenlets, RSS."""
        return cast("dict[str, Any]", json.loads(self.get("/_stats", timeout)[1]))

    def wait_stopped(self) -> list[dict[str, Any]]:
        """Stop gracefully and return every event; the last must be 'stopped'."""
        self.stop()
        return list(self.events)

    def stderr_text(self, limit: int = 4000) -> str:
        try:
            data = Path(self.stderr_path).read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def explain(self, message: str, events: int = 12) -> str:
        tail = "\n".join("    " + json.dumps(e, sort_keys=True) for e in self.events[-events:])
        stderr = "\n".join("    " + line for line in self.stderr_text(2000).splitlines()[-20:])
        if self.proc is not None and self.proc.poll() is not None and "exited" not in message:
            message += f" [the server process has exited, status {self.proc.returncode}]"
        return (
            f"{self.name}: {message}\n  command: {' '.join(self.argv)}\n"
            f"  last server events:\n{tail or '    (none)'}\n"
            f"  server stderr (tail, {self.stderr_path}):\n{stderr or '    (empty)'}"
        )
