"""Does the server survive gevent.pywsgi closing a connection's socket under the handler's
reader greenlet?  (tests/harness/closed_under_reader.py says how it can fail.)

Each arm is a real gevent-ws server process and real websocket-client
connections, one after another: a busy view (the client's answer arrives while it works),
and the request either released when the view returns (the control: every connection is
served) or kept, as a layer that holds the request past its response does.  Kept, on
gevent-ws the process aborts in libev after the first exchange (GWS_READER_ABORT); the
first exchange is the evidence that the server served before it died.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websocket

from tests.harness.defects import GWS_READER_ABORT
from tests.harness.paths import ROOT

SERVER = ROOT / "tests" / "harness" / "closed_under_reader.py"
CONNECTIONS = 5  # each served one proves the server lived through its predecessor's close
BUSY = 0.02  # s the view blocks the loop: far longer than a loopback client takes to answer
BOUND = 5.0  # s for any one step: readiness, an exchange, the exit after an abort
LIBEV_ABORT = "I/O watcher with invalid fd found in epoll_ctl"
READER_DEFECTS = {"gevent-ws": GWS_READER_ABORT}  # the handlers the tiny server runs


@contextmanager
def tiny_server(
    python: str, keep: bool, stderr: Path
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """The server process and its stdout's lines; stopped (by its PID) on the way out."""
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            # -I: not the script's directory first on sys.path (tests/harness/bisect.py)
            [python, "-I", str(SERVER), str(BUSY), "1" if keep else "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(BOUND)
        reader.join(BOUND)


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None  # PIPE
    for line in proc.stdout:
        lines.put(line)


def exchange(port: int, lines: queue.Queue[str]) -> None:
    """One websocket: the server's hello, our answer, and the server's line saying it read it."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=BOUND)
    try:
        if ws.recv() != "hello":
            raise AssertionError("the server's first message is not 'hello'")
        ws.send("answer")
        if json.loads(lines.get(timeout=BOUND)) != {"received": "answer"}:
            raise AssertionError("the server did not read our answer")
    finally:
        ws.close(timeout=0)


@pytest.mark.parametrize("keep", [False, True], ids=["request-released", "request-kept"])
def test_server_survives_socket_closed_under_reader(session, tmp_path, keep):
    handler = session.handler
    if handler not in READER_DEFECTS:
        pytest.skip(f"the tiny server runs gevent-ws, this session's handler is {handler}")
    defect = READER_DEFECTS.get(handler) if keep else None
    stderr = tmp_path / "server.stderr.log"
    with tiny_server(session.server_python, keep, stderr) as (proc, lines):
        try:
            port = json.loads(lines.get(timeout=BOUND))["port"]
        except queue.Empty:
            pytest.fail(f"no readiness line within {BOUND} s; stderr: {stderr.read_text()[-800:]}")
        served = 0
        for _ in range(CONNECTIONS):
            try:
                exchange(port, lines)
            except (OSError, websocket.WebSocketException, queue.Empty):
                break
            served += 1
        try:
            status = proc.wait(BOUND) if served < CONNECTIONS else proc.poll()
        except subprocess.TimeoutExpired:
            status = None
    seen = (
        f"{served} of {CONNECTIONS} connections served, server exit status {status}, "
        f"stderr tail: {stderr.read_text()[-600:]!r}"
    )
    assert served >= 1, f"{handler}, request kept={keep}: the first exchange failed; {seen}"
    if defect:
        assert status == -signal.SIGABRT and LIBEV_ABORT in stderr.read_text(), (
            f"{handler}, request kept: expected the defect {defect!r}; seen {seen}"
        )
    else:
        assert served == CONNECTIONS and status is None, (
            f"{handler}, request kept={keep}: expected every connection served and the "
            f"server alive; seen {seen}"
        )
