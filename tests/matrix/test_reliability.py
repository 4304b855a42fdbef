"""Reliability: load, faults and interrupts.

A matrix that hangs, leaks processes or reports a flaky ``-`` is worse than
none: every ``-`` must be the system's, never the harness's.  These tests put
the harness and the server under load, kill the server mid-cell, drop clients
mid-stream a thousand times, and interrupt pytest with a server up.  Every
wait is bounded and its bound is named in the failure message.  The figures
land in the session's results file under "reliability".

Run in the sessions that serve the patched handler (tests_impl's reliability
knob); the assertions on close() follow the build the server reports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import textwrap
import time
from pathlib import Path

import pytest

from tests.bench import load
from tests.harness import clients, records
from tests.harness.cells import Cell, node_id
from tests.harness.cells_pytest import CellsRun
from tests.harness.child_pytest import (
    HOLD_BOUND,
    INTERRUPT_BOUND,
    PYTEST_START_BOUND,
    child_pytest,
    finish,
    read_events,
    wait_event,
)
from tests.harness.criteria import ITERATOR_MESSAGE, VIEW_MESSAGE
from tests.harness.paths import ROOT
from tests.harness.procs import children, procs_in_session
from tests.harness.records import SessionResults
from tests.harness.server import HTTP_TIMEOUT, READY_TIMEOUT, STOP_TIMEOUT, Server

LOAD_CLIENTS = int(os.environ.get("RELIABILITY_LOAD_CLIENTS", "200"))
DISCONNECTS = int(os.environ.get("RELIABILITY_DISCONNECTS", "1000"))
WARM_UP = 10  # connections before the baseline is taken (first-use allocations)
HELD = 10  # connections held open to show that the figures see them
DROP_TIMEOUT = 10.0  # s any single wait of a disconnecting client may take
DISCONNECT_EVENTS_TIMEOUT = 60.0  # s for the server to log every dropped connection
SETTLE_TIMEOUT = 10.0  # s for fds and greenlets to return to their baseline
# A whole cell: readiness, the page, both clients killed at their bound, and stop.
CELL_BOUND = (
    READY_TIMEOUT + HTTP_TIMEOUT + len(clients.CLIENTS) * clients.PROCESS_TIMEOUT + 2 * STOP_TIMEOUT
)


def record(results, name, **figures):
    results.records.setdefault("reliability", []).append({"test": name, **figures})


def patched(server):
    return (server.versions.get("gevent-websocket") or "").endswith("+fixed")


# -- 1. load -------------------------------------------------------------------


def test_load_concurrent_clients_lose_and_duplicate_nothing(session, results):
    """LOAD_CLIENTS real websocket clients at once on /streaming, checked on both sides."""
    result = load.measure(
        session.server_python,
        bool(session.agent),
        LOAD_CLIENTS,
        log_dir=session.logs,
        require_fixed=False,
    )
    record(
        results,
        "load",
        **{k: v for k, v in result.items() if k != "problems"},
        problems={k: v[:20] for k, v in result["problems"].items()},
    )
    bad = {k: v[:10] for k, v in result["problems"].items() if v}
    assert not bad, f"{load.summary(result)}\n{json.dumps(bad, indent=1)}"
    assert result["completed"] == LOAD_CLIENTS, load.summary(result)


# -- 2. faults -----------------------------------------------------------------


def exchange_then_drop(ws_url, index, how):
    """Complete the view's exchange, receive the iterator's message, then vanish.

    ``how`` is "fin" (close the socket: an orderly TCP shutdown, no close frame)
    or "rst" (SO_LINGER 0: the connection is reset).  "complete" answers both
    messages and closes normally, for the warm-up.
    """
    import websocket

    ws = websocket.create_connection(
        f"{ws_url}/streaming?client=drop-{index}", timeout=DROP_TIMEOUT
    )
    try:
        assert ws.recv() == VIEW_MESSAGE
        ws.send(f"drop-{index} re: view")
        assert ws.recv() == ITERATOR_MESSAGE
        if how == "complete":
            ws.send(f"drop-{index} re: iterator")
            ws.recv_frame()  # the server's close frame
            return
        if how == "rst":
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        if how == "complete":
            ws.shutdown()
        else:
            ws.sock.close()  # no close frame: the client just goes


def hold_open(server, count):
    """`count` websockets left waiting inside the view (its message received, unanswered)."""
    import websocket

    held = []
    for i in range(count):
        ws = websocket.create_connection(
            f"{server.ws_url}/view?client=hold-{i}", timeout=DROP_TIMEOUT
        )
        held.append(ws)
        assert ws.recv() == VIEW_MESSAGE
    return held


def wait_settled(server, baseline, keys=("fds", "greenlets")):
    """Poll /_stats until `keys` equal the baseline; return the last figures."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        now = server.stats()
        if all(now[k] == baseline[k] for k in keys) or time.monotonic() >= deadline:
            return now
        time.sleep(0.1)


def steady_stats(server, keys=("fds", "greenlets"), repeats=3):
    """The first /_stats reading that `repeats` consecutive polls agree on.

    The warm-up's handlers can still be unwinding when its last client is gone:
    a single reading taken then counted their greenlets into the baseline.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    readings = []
    while True:
        now = server.stats()
        readings = [*readings[-(repeats - 1) :], now]
        if len(readings) == repeats and len({tuple(r[k] for k in keys) for r in readings}) == 1:
            return now
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"/_stats {keys} did not hold still for {repeats} polls within "
                f"{SETTLE_TIMEOUT:.0f} s (bound): last readings {readings}"
            )
        time.sleep(0.1)


def test_disconnect_mid_stream_returns_to_baseline(session, results):
    """DISCONNECTS clients vanish inside response_iter: logged, closed, nothing leaked."""
    with Server(
        session.server_python, agent=bool(session.agent), log_dir=session.logs, name="disconnects"
    ) as server:
        for i in range(WARM_UP):
            exchange_then_drop(server.ws_url, f"warm-{i}", ("complete", "fin", "rst")[i % 3])
        baseline = steady_stats(server)
        held = hold_open(server, HELD)
        try:
            holding = server.stats()
        finally:
            for ws in held:
                ws.sock.close()
        # Positive control: the figures see open connections, so a return to the
        # baseline means something.
        assert holding["fds"] >= baseline["fds"] + HELD, (baseline, holding)
        assert holding["greenlets"] >= baseline["greenlets"] + HELD, (baseline, holding)
        settled = wait_settled(server, baseline)
        assert (settled["fds"], settled["greenlets"]) == (baseline["fds"], baseline["greenlets"]), (
            f"{HELD} held connections, dropped: not back to the baseline within "
            f"{SETTLE_TIMEOUT:.0f} s (bound): baseline {baseline}, now {settled}"
        )
        started = time.monotonic()
        for i in range(DISCONNECTS):
            exchange_then_drop(server.ws_url, i, "rst" if i % 2 else "fin")
        dropping = time.monotonic() - started
        queries = {f"client=drop-{i}" for i in range(DISCONNECTS)}
        fixed = patched(server)

        def rids():
            return {
                e["rid"]
                for e in list(server.events)
                if e["event"] == "request" and e.get("query") in queries
            }

        def logged(event, **match):
            mine = rids()
            return [
                e
                for e in list(server.events)
                if e["event"] == event
                and e.get("rid") in mine
                and all(e.get(k) == v for k, v in match.items())
            ]

        deadline = time.monotonic() + DISCONNECT_EVENTS_TIMEOUT
        while time.monotonic() < deadline:
            done = logged("iterable_closed" if fixed else "iterator_received_missing")
            if len(done) >= DISCONNECTS:
                break
            time.sleep(0.1)
        after = wait_settled(server, baseline)
        gone = logged("iterator_received_missing", client_gone=True)
        closed = logged("iterable_closed")
        answered = logged("iterator_received")
        figures = {
            "disconnects": DISCONNECTS,
            "agent": bool(session.agent),
            "patched": fixed,
            "drop_seconds": round(dropping, 2),
            "requests": len(rids()),
            "client_gone_events": len(gone),
            "iterable_closed_events": len(closed),
            "baseline": baseline,
            "holding": holding,
            "after": after,
        }
        record(results, "disconnects", **figures)
        summary = server.explain(
            f"after {DISCONNECTS} mid-stream disconnects and up to "
            f"{DISCONNECT_EVENTS_TIMEOUT:.0f} s (bound) for their events: "
            f"{json.dumps(figures)}"
        )
        assert len(rids()) == DISCONNECTS, summary
        assert not answered, summary
        # Each disconnect is logged by the server: receive() saw the client go.
        assert len(gone) == DISCONNECTS, summary
        # The patched handler still closes the iterable, once per connection.
        assert len(closed) == (DISCONNECTS if fixed else 0), summary
        assert len({e["rid"] for e in closed}) == len(closed), summary
        leaked = {
            k: (baseline[k], after[k]) for k in ("fds", "greenlets") if after[k] != baseline[k]
        }
        assert not leaked, (
            f"not back to the baseline within {SETTLE_TIMEOUT:.0f} s (bound): "
            f"{leaked} (baseline, after)\n{summary}"
        )


def session_args(session, logs, results_path):
    """The child's claim: this session's stack and arm (the one builder of a cells run)."""
    return CellsRun(
        paths=[],
        stack=session.stack,
        agent=session.agent,
        fixed=session.fixed,
        server_python=session.server_python,
        results=results_path,
        logs=logs,
    ).args()


KILL_ATTEMPTS = 3  # a kill that lands after the whole cell tested nothing: try again


def test_server_killed_mid_cell_fails_within_its_bound(session, tmp_path):
    """SIGKILL the server after the view's exchange: the cell fails fast, quoting the events."""
    if session.agent is None or session.fixed is None:
        pytest.skip("needs the session's claim (--agent/--fixed)")
    cell = Cell(session.stack, session.agent, session.fixed, False, False, True)
    for attempt in range(1, KILL_ATTEMPTS + 1):
        logs = tmp_path / f"logs-{attempt}"
        child = child_pytest([node_id(cell), *session_args(session, logs, tmp_path / "r.json")])
        events = logs / f"{cell.slug()}.events.log"
        view = wait_event(
            events,
            lambda e: e["event"] == "view_received",
            PYTEST_START_BOUND + READY_TIMEOUT,
            "the view's exchange",
            child,
        )
        try:
            os.killpg(view["pid"], signal.SIGKILL)
        except ProcessLookupError:  # the whole cell was over before the kill landed
            finish(child, CELL_BOUND)
            continue
        killed = time.monotonic()
        out = finish(child, CELL_BOUND)
        took = time.monotonic() - killed
        # The rest of the cell (the iterator's exchange, both closes) can outrun this
        # watcher's 20 ms poll of the events log: with every exchange done the kill
        # landed after them, and tested only the control "server lived until stopped"
        # (or nothing, if the cell was over).  A kill that landed mid-cell cannot leave
        # every client's exchange complete.
        if all(
            o.verdict == "+"
            for o in records.read(tmp_path / "r.json", SessionResults, "this test")
            .cells[0]
            .observed
        ):
            continue
        break
    else:
        pytest.fail(
            f"{KILL_ATTEMPTS} attempts: the cell finished every time before the "
            f"SIGKILL after its view's exchange landed; nothing was tested"
        )
    assert child.returncode == 1, f"child pytest status {child.returncode}:\n{out[-3000:]}"
    assert took <= CELL_BOUND, f"the cell took {took:.1f} s > {CELL_BOUND:.0f} s (bound)"
    # The failure quotes the server's last events and says the server died.
    assert "last server events" in out and '"view_received"' in out, out[-3000:]
    assert "has exited, status -9" in out, out[-3000:]
    (cell_record,) = records.read(tmp_path / "r.json", SessionResults, "this test").cells
    assert cell_record.verdict == "-" or any(o.verdict == "-" for o in cell_record.observed), (
        cell_record.observed
    )
    assert not procs_in_session(view["pid"])


SERVING_CHILD = """
import socket, sys, threading
sys.path.insert(0, {root!r})
from tests.harness.server import Server

def test_interrupted_while_serving():
    with Server({python!r}, agent={agent}, log_dir={logs!r}, name="serving") as srv:
        conn = socket.create_connection(("127.0.0.1", srv.ready["port"]), timeout=5)
        conn.sendall(b"GET /view HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                     b"Connection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n")
        assert conn.recv(12) == b"HTTP/1.1 101"
        threading.Event().wait({hold})  # the view waits for an answer: the interrupt lands here
        conn.close()
"""
SLOW_PYTHON = """#!/bin/sh
# A server interpreter that takes its time to start: SIGINT lands during start().
sleep 60
exec {python} "$@"
"""


NOX_TERMINATE_TIMEOUT = 0.2  # s nox's default from SIGTERM to SIGKILL of a command


@pytest.mark.parametrize("phase", ["starting", "serving", "serving-sigterm", "serving-nox-kill"])
def test_interrupted_pytest_leaves_no_server(session, tmp_path, phase):
    """Ctrl-C while a server starts (SIGINT to pytest) or serves a cell (to its group);
    SIGTERM to pytest while serving (what nox sends 0.3 s after a Ctrl-C aimed at nox),
    and that SIGTERM followed by SIGKILL 0.2 s later (nox's default terminate_timeout)."""
    logs = tmp_path / "logs"
    if phase == "starting":
        slow = tmp_path / "slow-python"
        slow.write_text(SLOW_PYTHON.format(python=session.server_python))
        slow.chmod(0o755)
        child_test = tmp_path / "test_child.py"
        child_test.write_text(
            textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            from tests.harness.server import Server

            def test_interrupted_while_starting():
                with Server({str(slow)!r}, log_dir={str(logs)!r}, name="slow"):
                    pass
        """)
        )
        child = child_pytest(["-s", str(child_test)], cwd=tmp_path)
        # The server runs in a session of its own: find it as the child's child.
        deadline = time.monotonic() + PYTEST_START_BOUND
        sid = None
        while sid is None and time.monotonic() < deadline and child.poll() is None:
            for pid in children(child.pid):
                try:
                    if b"slow-python" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        sid = pid
                except OSError:
                    pass
            time.sleep(0.02)
        assert sid is not None, (
            f"no server process within {PYTEST_START_BOUND:.0f} s (bound):\n{finish(child)[-3000:]}"
        )
        os.kill(child.pid, signal.SIGINT)  # pytest only, as `kill -INT`
    else:
        if session.agent is None or session.fixed is None:
            pytest.skip("needs the session's claim (--agent/--fixed)")
        # A cell ends ~0.3 s after its readiness line, so an interrupt aimed at a
        # running cell could land after it (seen once in CI): the child holds a
        # websocket open on the view instead, until the interrupt (bounded).
        child_test = tmp_path / "test_child.py"
        child_test.write_text(
            SERVING_CHILD.format(
                root=str(ROOT),
                logs=str(logs),
                python=str(session.server_python),
                agent=bool(session.agent),
                hold=HOLD_BOUND,
            )
        )
        # -p tests.conftest: its SIGTERM handler is what the signals below exercise.
        child = child_pytest(["-p", "tests.conftest", "-s", str(child_test)])
        events = logs / "serving.events.log"
        listening = wait_event(
            events,
            lambda e: e["event"] == "listening",
            PYTEST_START_BOUND + READY_TIMEOUT,
            "the readiness line",
            child,
        )
        sid = listening["pid"]
        if phase == "serving":
            # A terminal's Ctrl-C: the whole foreground group (pytest and its clients).
            os.killpg(child.pid, signal.SIGINT)
        else:
            os.kill(child.pid, signal.SIGTERM)
            if phase == "serving-nox-kill":
                time.sleep(NOX_TERMINATE_TIMEOUT)
                os.kill(child.pid, signal.SIGKILL)
    sent = time.monotonic()
    out = finish(child)
    took = time.monotonic() - sent
    assert took <= INTERRUPT_BOUND, f"exit took {took:.1f} s > {INTERRUPT_BOUND:.0f} s (bound)"
    if phase == "serving-nox-kill":
        # No teardown here: the server got its SIGTERM from the signal handler
        # (Server.signal_all) and must stop on its own, within its own bound.
        deadline = time.monotonic() + STOP_TIMEOUT
        while procs_in_session(sid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs_in_session(sid), (
            f"server session {sid} still running {STOP_TIMEOUT:.0f} s (bound) after pytest "
            f"was killed:\n{out[-3000:]}"
        )
        return
    assert "KeyboardInterrupt" in out, out[-3000:]
    assert not procs_in_session(sid), (
        f"{phase}: processes {procs_in_session(sid)} of server session {sid} outlived "
        f"the interrupted pytest:\n{out[-3000:]}"
    )
    if phase != "starting":
        stopped = [e["event"] for e in read_events(events)]
        assert "stopping" in stopped, (
            f"the server was not stopped by the harness's teardown (no 'stopping' event): {stopped}"
        )
