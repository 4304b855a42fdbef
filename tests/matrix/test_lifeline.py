"""No server outlives its harness, even a SIGKILLed one (app/lifeline.py).

A SIGKILLed pytest runs no teardown and no signal handler: its servers are
on their own.  Each was started with a pipe as stdin (tests/harness/server.py)
and ``--watch-stdin``; the kernel closes the pipe when pytest dies, the server
reads EOF and stops itself.  Run on every arm, so on CPython 2.7 with gevent
1.1.2 (the 2016 stack) and on 3.x, with and without the agent's threads.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.harness.child_pytest import (
    HOLD_BOUND,
    PYTEST_START_BOUND,
    child_pytest,
    finish,
    wait_event,
)
from tests.harness.paths import ROOT
from tests.harness.procs import procs_in_session
from tests.harness.server import READY_TIMEOUT

LIFELINE_BOUND = 2.0  # s from the harness's death to the last server process gone
HOLDING_CHILD = """
import socket, sys, threading
sys.path.insert(0, {root!r})
from tests.harness.server import Server

def test_holds_a_live_server():
    server = Server({python!r}, agent={agent}, log_dir={logs!r}, name="serving", fork={fork})
    if not {lifeline}:  # the control: the same server without its lifeline
        server.argv.remove("--watch-stdin")
    with server as srv:
        conn = socket.create_connection(("127.0.0.1", srv.ready["port"]), timeout=5)
        conn.sendall(b"GET /view HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                     b"Connection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n")
        assert conn.recv(12) == b"HTTP/1.1 101"
        threading.Event().wait({hold})  # the SIGKILL lands here
"""


@pytest.mark.parametrize("target", ["pytest", "pytest-group", "forked", "control-without-lifeline"])
def test_sigkilled_pytest_leaves_no_server(session, results, tmp_path, target):
    """SIGKILL a pytest that holds a live server (a websocket open in the view):
    within LIFELINE_BOUND no process of the server's session is left, nor, for a server
    forked from app.forkserver, the fork server.  The control shows what stops it:
    without --watch-stdin the same server outlives the kill."""
    lifeline = target != "control-without-lifeline"
    fork = target == "forked"
    logs = tmp_path / "logs"
    child_test = tmp_path / "test_child.py"
    child_test.write_text(
        HOLDING_CHILD.format(
            root=str(ROOT),
            logs=str(logs),
            python=str(session.server_python),
            agent=bool(session.agent),
            hold=HOLD_BOUND,
            lifeline=lifeline,
            fork=fork,
        )
    )
    child = child_pytest(["-s", str(child_test)])
    events = logs / "serving.events.log"
    # The view has sent its message: the websocket is open, the server busy with it.
    wait_event(
        events,
        lambda e: e["event"] == "request",
        PYTEST_START_BOUND + READY_TIMEOUT,
        "the view's request",
        child,
    )
    ready = wait_event(
        events, lambda e: e["event"] == "listening", 1.0, "the readiness line", child
    )
    server = ready["pid"]
    assert procs_in_session(server), f"the server (pid {server}) is not running before the kill"
    # The fork server leads a session of its own too (tests/harness/forked.py).
    forks = int(ready["forked_from"]) if fork else None
    assert not fork or forks and procs_in_session(forks), (
        f"a forked server's readiness line names its running fork server: {ready}"
    )
    if target == "pytest-group":  # nox's own way to end a session's commands, minus SIGTERM
        os.killpg(child.pid, signal.SIGKILL)
    else:
        os.kill(child.pid, signal.SIGKILL)
    killed = time.monotonic()
    sessions = [server, *([forks] if forks else [])]

    def left_of() -> list[int]:
        return [p for s in sessions for p in procs_in_session(s)]

    while left_of() and time.monotonic() - killed < LIFELINE_BOUND:
        time.sleep(0.02)
    took = time.monotonic() - killed
    left = left_of()
    out = finish(child)
    if left:  # the bound is what the test shows; then clean up what the kill left
        for leader in sessions:
            try:
                os.killpg(leader, signal.SIGKILL)
            except ProcessLookupError:
                pass
    results.records.setdefault("lifeline", []).append(
        {
            "target": target,
            "stack": session.stack,
            "agent": session.agent,
            "fixed": session.fixed,
            "stopped_after": None if left else round(took, 3),
            "left": left,
        }
    )
    assert child.returncode == -signal.SIGKILL, f"child pytest status {child.returncode}:\n{out}"
    if not lifeline:
        assert left, (
            f"without --watch-stdin the server (session {server}) should outlive its "
            f"SIGKILLed pytest, but it stopped within {took:.2f} s: then something "
            "else than the lifeline stops servers, and this test shows nothing"
        )
        return
    assert not left, (
        f"server session {server} (processes {left}) still running {LIFELINE_BOUND:.1f} s "
        f"(bound) after its pytest was SIGKILLed; server stderr: "
        f"{(logs / 'serving.stderr.log').read_text(errors='replace')[-2000:]}"
    )
