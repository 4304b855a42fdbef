"""Does the server survive gevent.pywsgi closing a connection's socket under the handler's
reader greenlet?  (tests/harness/closed_under_reader.py says how it can fail.)

Each arm is a real gevent-ws server process and real websocket-client
connections, one after another: a busy view (it works until the client's answer is there),
and the request either released when the view returns (the control: every connection is
served) or kept, as a layer that holds the request past its response does.  Kept, on
gevent-ws the process aborts in libev after the first exchange: the strict expected
failure GWS_READER_ABORT, recorded with the handler's protocol checks (and counted in
the which-handler table's).  The first exchange is the evidence that the server served before it
died; no exchange, or a death other than libev's abort, fails on both arms.
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

from tests.harness.defects import GWS_READER_ABORT, died_of
from tests.harness.paths import ROOT

SERVER = ROOT / "tests" / "harness" / "closed_under_reader.py"
CONNECTIONS = 5  # each served one proves the server lived through its predecessor's close
BOUND = 5.0  # s for any one step: readiness, an exchange, the exit after an abort
READER_DEFECTS = {"gevent-ws": GWS_READER_ABORT}  # the handlers the tiny server runs
protocol = pytest.mark.protocol  # a check of the handler, recorded beside its protocol checks


class Unexpected(Exception):
    """Not an AssertionError: what no expected failure covers (no exchange, another death)."""


@contextmanager
def tiny_server(
    python: str, keep: bool, stderr: Path
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """The server process and its stdout's lines; stopped (by its PID) on the way out."""
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            # -I: the script's directory is not put first on sys.path, where
            # tests/harness/bisect.py would shadow the standard library's bisect
            [python, "-I", str(SERVER), "1" if keep else "0"],
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
        if (got := ws.recv()) != "hello":
            raise Unexpected(f"the server's first message is {got!r}, not 'hello'")
        ws.send("answer")
        if (line := json.loads(lines.get(timeout=BOUND))) != {"received": "answer"}:
            raise Unexpected(f"the server read {line!r}, not our answer")
    finally:
        ws.close(timeout=0)


@protocol
@pytest.mark.parametrize("keep", [False, True], ids=["request-released", "request-kept"])
def test_server_survives_socket_closed_under_reader(request, session, tmp_path, keep):
    handler = session.handler
    if handler not in READER_DEFECTS:
        pytest.skip(f"the tiny server runs gevent-ws, this session's handler is {handler}")
    defect = READER_DEFECTS[handler] if keep else None
    # a handler's defect, as its protocol checks name theirs (tests/matrix/test_protocol.py)
    request.node.user_properties.append(("defect", defect))
    if defect:
        request.applymarker(pytest.mark.xfail(reason=defect, strict=True, raises=AssertionError))
    stderr = tmp_path / "server.stderr.log"
    with tiny_server(session.server_python, keep, stderr) as (proc, lines):
        try:
            port = json.loads(lines.get(timeout=BOUND))["port"]
        except queue.Empty:
            raise Unexpected(
                f"no readiness line within {BOUND} s; {stderr.read_text()[-800:]}"
            ) from None
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
    said = stderr.read_text()
    seen = (
        f"{served} of {CONNECTIONS} connections served, server exit status {status}, "
        f"stderr tail: {said[-600:]!r}"
    )
    request.node.user_properties.append(("evidence", seen))
    if served == 0:  # no evidence that it served at all: no observation
        raise Unexpected(f"{handler}, request kept={keep}: the first exchange failed; {seen}")
    aborted = died_of(GWS_READER_ABORT, status, said)
    if not aborted and (served < CONNECTIONS or status is not None):
        raise Unexpected(f"{handler}, request kept={keep}: not served, not aborted; {seen}")
    assert not aborted, f"{handler}, request kept={keep}: the server aborted in libev; {seen}"
