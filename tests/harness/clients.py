"""Run the two real websocket clients (Python and the seed's node script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .paths import ROOT

CLIENT_TIMEOUT = 3.0  # s any single client wait may take (passed to the client)
PROCESS_TIMEOUT = 30.0  # s a whole client run may take before it is killed
NODE_SCRIPT = ROOT / "app" / "websocket_connect.js"
CLIENTS = ("python", "node")


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


def command(client: str, url: str, timeout: float = CLIENT_TIMEOUT) -> list[str]:
    if client == "python":
        return [sys.executable, "-m", "app.client", "--timeout", str(timeout), url]
    if client == "node":
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: install Node.js >= 18 to run the seed's "
                               "client (Debian: apt-get install nodejs npm)")
        if not (ROOT / "app" / "node_modules" / "ws").is_dir():
            raise RuntimeError("the node client's 'ws' package is missing: run "
                               "`npm ci --prefix app` (nox sessions do this)")
        return [node, str(NODE_SCRIPT), url, "--timeout", str(timeout)]
    raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")


def run(client: str, url: str, timeout: float = CLIENT_TIMEOUT) -> Transcript:
    argv = command(client, url, timeout)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=PROCESS_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return Transcript(client, url, None, _parse(exc.stdout or b""),
                          f"killed after {PROCESS_TIMEOUT:.0f} s (bound)",
                          time.monotonic() - started)
    return Transcript(client, url, proc.returncode, _parse(proc.stdout),
                      proc.stderr.decode("utf-8", "replace"), time.monotonic() - started)


def _parse(stdout: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "unparsed_stdout", "line": line})
    return events
