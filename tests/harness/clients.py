"""Run the two real websocket clients (Python and the seed's node script).

A harness that knows the server's side of a connection may tell a client so (``notice``):
the Python client reads ``server_keeps_tcp_open`` on its stdin (app/client.py --notices)
and ends its wait for the server's close of TCP then, instead of at its bound.  The node
client needs none: `ws` half-closes after its close reply, and what the server does on
that EOF is the observation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from .paths import ROOT

CLIENT_TIMEOUT = 3.0  # s any single client wait may take (passed to the client)
PROCESS_TIMEOUT = 30.0  # s a whole client run may take before it is killed
NODE_SCRIPT = ROOT / "app" / "websocket_connect.js"
CLIENTS = ("python", "node")
NOTICED = ("python",)  # the clients that read notices on stdin
KEPT_OPEN = b"server_keeps_tcp_open\n"  # app/client.py KEPT_OPEN
NOTICE_POLL = 0.05  # s between looks at a client's notice and its exit


@dataclass
class Transcript:
    client: str
    url: str
    returncode: int | None
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    duration: float = 0.0

    @property
    def received(self) -> list[Any]:
        return [e["data"] for e in self.events if e["event"] == "received"]

    @property
    def sent(self) -> list[Any]:
        return [e["data"] for e in self.events if e["event"] == "sent"]

    @property
    def close(self) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == "closed"), None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def command(
    client: str, url: str, timeout: float = CLIENT_TIMEOUT, notices: bool = False
) -> list[str]:
    if client == "python":
        return [
            sys.executable,
            "-m",
            "app.client",
            "--timeout",
            str(timeout),
            *(["--notices"] if notices else []),
            url,
        ]
    if client == "node":
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(
                "node is not on PATH: install Node.js >= 18 to run the seed's "
                "client (Debian: apt-get install nodejs npm)"
            )
        if not (ROOT / "app" / "node_modules" / "ws").is_dir():
            raise RuntimeError(
                "the node client's 'ws' package is missing: run "
                "`npm ci --prefix app` (nox sessions do this)"
            )
        return [node, str(NODE_SCRIPT), url, "--timeout", str(timeout)]
    raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")


def run(
    client: str, url: str, timeout: float = CLIENT_TIMEOUT, kept_open: threading.Event | None = None
) -> Transcript:
    """``kept_open``: set once the server reported it keeps this client's connection open
    after the websocket's request (a notice for the clients of NOTICED)."""
    notices = kept_open is not None and client in NOTICED
    argv = command(client, url, timeout, notices)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if notices else subprocess.DEVNULL,
    )
    # communicate() would close stdin at once: the notice goes through a pipe of its own.
    pipe, proc.stdin = proc.stdin, None
    if notices and pipe is not None and kept_open is not None:
        threading.Thread(target=_tell, args=(proc, pipe, kept_open), daemon=True).start()
    try:
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return Transcript(
            client,
            url,
            None,
            _parse(out or b""),
            f"killed after {PROCESS_TIMEOUT:.0f} s (bound)",
            time.monotonic() - started,
        )
    return Transcript(
        client,
        url,
        proc.returncode,
        _parse(out),
        err.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


def _tell(proc: subprocess.Popen[bytes], pipe: IO[bytes], kept_open: threading.Event) -> None:
    """Write the notice once ``kept_open`` is set, unless the client is gone first."""
    try:
        while proc.poll() is None:
            if kept_open.wait(NOTICE_POLL):
                pipe.write(KEPT_OPEN)
                pipe.flush()
                return
    except (BrokenPipeError, ValueError):  # the client ended meanwhile: nothing to tell
        pass
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def _parse(stdout: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "unparsed_stdout", "line": line})
    return events
