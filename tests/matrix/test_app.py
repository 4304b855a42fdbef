"""The system under test on its own: server lifecycle, routes, clients, close() contract.

Runs in every session against that session's server interpreter and build, so
the same source is exercised on CPython 2.7 (2016 stack) and 3.x (today).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from tests.harness import clients
from tests.harness.cells import build_name
from tests.harness.model import StackFacts
from tests.harness.paths import ROOT
from tests.harness.server import Server

SIGNAL_BOUND = 2.0  # s: the server must exit this soon after SIGTERM/SIGINT
RAW_KINDS = ("list", "generator", "raising", "object")


@pytest.fixture
def server(session):
    # RUM off: the agent is then eager on every stack, so only the handler decides.
    with Server(
        session.server_python, agent=bool(session.agent), log_dir=session.logs, name="app"
    ) as running:
        yield running


@pytest.mark.parametrize("client", clients.CLIENTS)
@pytest.mark.parametrize("route", ["/view", "/streaming"])
def test_exchange_completes(server, client, route):
    transcript = clients.run(client, f"{server.ws_url}{route}?client={client}")
    # Without lazy layers the view always runs; the streaming iterator runs
    # only where the handler iterates the result (the subject of the cells).
    iterates = StackFacts.from_versions(server.versions).handler_iterates
    expected = ["Hello from view!"]
    if route == "/streaming" and iterates:
        expected.append("Hello from iterator!")
    assert transcript.received == expected, server.explain(
        f"{client} on {route}: expected {expected}, got {transcript.as_dict()}"
    )
    assert transcript.returncode == 0, transcript.as_dict()


@pytest.mark.parametrize("route", ["/view", "/streaming"])
def test_plain_get_on_websocket_route_is_4xx_with_body(server, route):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + route, timeout=5)
    body = caught.value.read()
    assert 400 <= caught.value.code < 500, (caught.value.code, body[:200])
    assert body.strip(), f"{route}: {caught.value.code} with an empty body"


def test_port_in_use_is_one_line_and_status_2(session, server):
    port = server.ready["port"]
    proc = subprocess.run(
        [session.server_python, "-m", "app", "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    stderr = proc.stderr.decode().strip()
    assert proc.returncode == 2, (proc.returncode, stderr)
    assert len(stderr.splitlines()) == 1 and f":{port} is already in use" in stderr, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_bound_with_a_websocket_open(session, signum):
    with Server(session.server_python, log_dir=session.logs, name=f"signal-{signum}") as srv:
        # A client that never answers keeps the view waiting on receive().
        sock = socket.create_connection(("127.0.0.1", srv.ready["port"]), timeout=5)
        sock.sendall(
            b"GET /view HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert sock.recv(12) == b"HTTP/1.1 101", srv.explain("no 101 for the raw upgrade")
        srv.wait_for(lambda e: e["event"] == "request", 5, "the upgrade request event")
        started = time.monotonic()
        os.kill(srv.proc.pid, signum)
        try:
            srv.proc.wait(SIGNAL_BOUND + 1)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - started
        sock.close()
        assert srv.proc.returncode is not None and took <= SIGNAL_BOUND, srv.explain(
            f"signal {signum}: expected exit within {SIGNAL_BOUND} s, took {took:.2f} s"
        )
        assert srv.proc.returncode == 0, srv.explain(f"exit status {srv.proc.returncode}")


def test_a_server_that_died_unasked_says_so_and_one_stopped_does_not(session):
    """Server.died, read by the control "server lived until stopped": the exit status of a
    process that ended before the harness stopped it (a crash, an abort), else None."""
    kind = {"log_dir": session.logs, "handler": session.server_handler}
    with Server(session.server_python, name="dies", **kind) as srv:
        os.kill(srv.proc.pid, signal.SIGKILL)  # ours, by its PID: a death nobody asked for
        srv.proc.wait(SIGNAL_BOUND)
    assert srv.died == -signal.SIGKILL, srv.explain(f"died: {srv.died}")
    with Server(session.server_python, name="stopped", **kind) as srv:
        assert srv.died is None, srv.explain(f"died while serving: {srv.died}")
    assert srv.died is None, srv.explain(f"stopped by the harness, yet died: {srv.died}")


def test_client_exit_status_is_1_without_an_exchange(server):
    for client in clients.CLIENTS:
        transcript = clients.run(client, f"ws://127.0.0.1:{free_port()}/view")
        assert transcript.returncode == 1, transcript.as_dict()
        assert transcript.events[-1]["event"] == "error", transcript.as_dict()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", RAW_KINDS)
def test_handler_closes_the_iterable_exactly_once(session, server, kind):
    """PEP 3333: close() once, whatever the iterable, also when iteration raises."""
    transcript = clients.run("python", f"{server.ws_url}/raw/{kind}?client=python")
    server.stop()
    rid = next(
        e["rid"] for e in server.events if e["event"] == "request" and e["path"] == f"/raw/{kind}"
    )
    closes = [e for e in server.events if e["event"] == "iterable_closed" and e["rid"] == rid]
    expected = 1 if session.fixed else 0
    assert len(closes) == expected, server.explain(
        f"/raw/{kind} on the {build_name(session.fixed)} handler: expected "
        f"close() {expected} time(s), saw {len(closes)}; client: {transcript.as_dict()}"
    )


def test_start_response_contract(session, server):
    """PEP 3333: start_response returns write(), takes bytes only, re-raises exc_info."""
    clients.run("python", f"{server.ws_url}/raw/write?client=python")
    server.stop()
    seen = [e for e in server.events if e["event"] == "start_response_contract"]
    assert len(seen) == 1, server.explain("expected one start_response_contract event")
    outcome = {k: seen[0][k] for k in ("write_bytes", "write_text", "exc_info", "second_call")}
    if session.fixed:
        expected = {
            "write_bytes": "ok",
            "write_text": "TypeError",
            "exc_info": "KeyError",
            "second_call": "AssertionError",
        }
    else:  # vanilla: the lambda returns a list, and swallows exc_info and repeat calls
        expected = {
            "write_bytes": "TypeError",
            "write_text": "TypeError",
            "exc_info": "ok",
            "second_call": "ok",
        }
    assert outcome == expected, server.explain(
        f"{build_name(session.fixed)} handler: expected {expected}, saw {outcome}"
    )


def test_no_server_outlives_a_failing_test(session, tmp_path):
    """A child pytest whose test fails with a server running leaves no process behind."""
    child = tmp_path / "test_child.py"
    child.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.harness.server import Server

        def test_fails_with_server_running():
            with Server({str(session.server_python)!r}) as srv:
                print("SERVER_PID", srv.proc.pid, flush=True)
                assert False, "deliberate failure"
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", str(child)],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 1 and "deliberate failure" in out, out[-2000:]
    pid = int(out.split("SERVER_PID", 1)[1].split()[0])
    assert not pid_alive(pid), f"server {pid} outlived the failing test"


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent (which has exited).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_every_app_module_compiles_on_the_server_interpreter(session):
    """app/ is one source for CPython 2.7 and 3.x: no f-strings, no annotations."""
    check = (
        "import glob, sys\n"
        "for path in sorted(glob.glob('app/*.py')):\n"
        "    compile(open(path).read(), path, 'exec')\n"
        "sys.stdout.write('%d.%d ok' % sys.version_info[:2])\n"
    )
    proc = subprocess.run(
        [session.server_python, "-c", check], cwd=ROOT, capture_output=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stdout.endswith(b" ok"), proc.stderr.decode()[-2000:]


def test_without_its_dependencies_one_line_naming_the_fix_and_status_2(session, tmp_path):
    """`python -m app` on this arm's interpreter, in an environment without gevent & co."""
    bare = tmp_path / "bare"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "virtualenv",
            "--quiet",
            "--no-download",
            "--no-pip",
            "--no-setuptools",
            "--no-wheel",
            "-p",
            str(session.server_python),
            str(bare),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.run(
        [bare / "bin" / "python", "-m", "app", "--agent"], cwd=ROOT, capture_output=True, timeout=30
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert (proc.returncode, proc.stdout, err.count("\n")) == (2, b"", 1), (proc.returncode, err)
    assert "gevent" in err and "`nox -s serve -- " in err and "--agent`" in err, err
