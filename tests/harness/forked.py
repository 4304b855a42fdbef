"""Servers forked from a process that has already imported them (app/forkserver.py).

A cell's server is still a process of its own, started with the same argv, the same
environment, a stdin lifeline, a stdout of events and a session of its own; what it
skips is the interpreter's start and the imports ``python -m app`` would make before its
options act (most of a server's start).  ``ForkedProcess`` answers what the harness asks
of a ``subprocess.Popen`` (pid, poll, wait, returncode, stdin, stdout), its exit status
reported by the fork server that reaps it.

One fork server per (interpreter, agent, handler) and per harness process, started on
first use and stopped at exit; if it is gone, its children's exits can no longer be
reported and a wait says so.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .paths import ROOT

SPAWN_TIMEOUT = 10.0  # s for the fork server to start and fork one child
STOP_TIMEOUT = 5.0  # s for the fork server to exit once its socket is closed
PACKET = 65536
OFF = "SERVER_FORK"  # =0: every server a process of its own (`nox -s bench` compares)


def enabled() -> bool:
    """Whether servers that can be forked are (all but SERVER_FORK=0)."""
    return os.environ.get(OFF, "1") != "0"


@dataclass(frozen=True)
class Key:
    python: str
    agent: bool
    handler: str | None


class ForkServerError(RuntimeError):
    pass


class ForkedProcess:
    """A forked server as the harness sees a Popen: exit status from its fork server."""

    def __init__(self, server: ForkServer, pid: int, stdin: IO[bytes], stdout: IO[bytes]):
        self.fork_server = server
        self.pid = pid
        self.args = server.argv
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self.exited = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self.exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        if self.returncode is None:
            raise ForkServerError(
                f"fork server {self.fork_server.proc.pid} exited before child {self.pid}: "
                f"its exit status is lost; see {self.fork_server.log}"
            )
        return self.returncode


class ForkServer:
    """``python -m app.forkserver`` for one kind of server, and its children."""

    servers: dict[Key, ForkServer] = {}
    lock = threading.Lock()

    @classmethod
    def of(cls, key: Key, env: dict[str, str], log_dir: Path) -> ForkServer:
        with cls.lock:
            server = cls.servers.get(key)
            if server is None or server.closed:
                server = cls.servers[key] = cls(key, env, log_dir)
            return server

    def __init__(self, key: Key, env: dict[str, str], log_dir: Path) -> None:
        self.argv = [
            key.python,
            "-m",
            "app.forkserver",
            *(["--agent"] if key.agent else []),
            *(["--handler", key.handler] if key.handler else []),
        ]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"forkserver-{os.getpid()}-{len(self.servers)}.stderr.log"
        with theirs, open(self.log, "wb") as stderr:
            # A session of its own: a Ctrl-C aimed at pytest does not reach it.
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self.sock = ours
        self.closed = False
        self._spawn = threading.Lock()
        self._answers: list[dict[str, Any]] = []
        self._answered = threading.Condition()
        self._children: dict[int, ForkedProcess] = {}
        self._early: dict[int, int] = {}  # exits reported before spawn() registered the child
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        atexit.register(self.close)

    def spawn(self, app_argv: list[str], stderr: IO[bytes]) -> ForkedProcess:
        """Fork ``python -m app <app_argv>`` with pipes for stdin and stdout."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            with self._spawn:
                self.sock.send(json.dumps({"argv": app_argv}).encode())
                for fd in (stdin_r, stdout_w, stderr.fileno()):
                    socket.send_fds(self.sock, [b"F"], [fd])
                answer = self._answer()
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        child = ForkedProcess(self, answer["spawned"], open(stdin_w, "wb"), open(stdout_r, "rb"))
        with self._answered:
            self._children[child.pid] = child
            if child.pid in self._early:
                self._exited(child, self._early.pop(child.pid))
        return child

    def _answer(self) -> dict[str, Any]:
        with self._answered:
            if not self._answered.wait_for(
                lambda: self._answers or not self._reader.is_alive(), SPAWN_TIMEOUT
            ):
                raise ForkServerError(
                    f"{' '.join(self.argv)}: no child forked within {SPAWN_TIMEOUT:.0f} s "
                    f"(bound); see {self.log}"
                )
            if not self._answers:
                raise ForkServerError(
                    f"{' '.join(self.argv)} exited (status {self.proc.poll()}) before forking; "
                    f"its stderr: {self.log.read_text(errors='replace')[-2000:]}"
                )
            return self._answers.pop(0)

    def _read(self) -> None:
        while True:
            try:
                packet = self.sock.recv(PACKET)
            except OSError:
                packet = b""
            if not packet:
                break
            message = json.loads(packet)
            with self._answered:
                if "exited" in message:
                    child = self._children.get(message["exited"])
                    if child is None:
                        self._early[message["exited"]] = message["status"]
                    else:
                        self._exited(child, message["status"])
                else:
                    self._answers.append(message)
                self._answered.notify_all()
        with self._answered:
            self.closed = True
            for child in self._children.values():
                child.exited.set()  # its status is lost: wait() says so
            self._answered.notify_all()

    def _exited(self, child: ForkedProcess, status: int) -> None:
        child.returncode = status
        child.exited.set()
        del self._children[child.pid]

    def close(self) -> None:
        """Close the socket: the fork server exits; its children live on their lifelines."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
