"""gunicorn as the harness starts it (Server(launcher="gunicorn")): stop and orphan protection.

The cells prove readiness and events; this proves that a gunicorn server, a
master and its worker, ends like ``python -m app`` does: on the harness's stop,
and by itself once the harness is gone (stdin lifeline in the master).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.harness.cells import LAUNCHER, MAIN_STACKS, STACKS, resolve_stacks, sessions
from tests.harness.paths import ROOT
from tests.harness.server import STOP_TIMEOUT, Server

ORPHAN_BOUND = 5.0  # s: lifeline grace (1.5 s) + gunicorn's graceful stop (1 s) + margin
HARNESS_BOUND = 30.0  # s for the stand-in harness to report its server ready


@pytest.fixture
def launcher(session):
    if session.launcher != "gunicorn":
        pytest.skip("gunicorn's stop and lifeline: run in a deploy session (--stack deploy)")
    return session.launcher


def alive(pid):
    """Running (a zombie has exited: its parent just has not reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids, bound):
    deadline = time.monotonic() + bound
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_stop_ends_master_and_worker(session, launcher):
    server = Server(
        session.server_python,
        agent=bool(session.agent),
        log_dir=session.logs,
        name="gunicorn-stop",
        launcher=launcher,
    )
    with server:
        master, worker = server.proc.pid, server.ready["pid"]
        assert worker != master and alive(worker), server.explain("no separate worker")
        sent = time.monotonic()
    took = time.monotonic() - sent
    assert server.proc.returncode == 0, server.explain(
        f"master exit status {server.proc.returncode}, expected 0 after SIGTERM"
    )
    assert took < STOP_TIMEOUT, server.explain(f"stop took {took:.1f} s (bound {STOP_TIMEOUT})")
    assert wait_gone([worker], STOP_TIMEOUT) == [], server.explain(f"worker {worker} outlived")
    assert server.events[-1]["event"] == "stopped", server.explain("last event is not 'stopped'")


HARNESS = """
import json, sys, threading
sys.path.insert(0, {root!r})
from tests.harness.server import Server

server = Server({python!r}, agent={agent}, log_dir={logs!r}, name="gunicorn-orphan",
                launcher="gunicorn").start()
print(json.dumps({{"master": server.proc.pid, "worker": server.ready["pid"]}}), flush=True)
threading.Event().wait({bound})  # until SIGKILLed: no teardown ever runs
"""


def test_a_killed_harness_leaves_no_gunicorn_process(session, launcher, tmp_path):
    code = textwrap.dedent(
        HARNESS.format(
            root=str(ROOT),
            python=str(session.server_python),
            agent=bool(session.agent),
            logs=str(tmp_path),
            bound=HARNESS_BOUND,
        )
    )
    with open(tmp_path / "harness.stderr.log", "wb") as err:
        harness = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        ready, _, _ = select.select([harness.stdout], [], [], HARNESS_BOUND)
        line = harness.stdout.readline() if ready else b""
        assert line, (
            f"the stand-in harness reported no ready server within "
            f"{HARNESS_BOUND:.0f} s (bound): "
            f"{(tmp_path / 'harness.stderr.log').read_text()[-2000:]}"
        )
        pids = json.loads(line)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(STOP_TIMEOUT)
        killed = time.monotonic()
        left = wait_gone([pids["master"], pids["worker"]], ORPHAN_BOUND)
        took = time.monotonic() - killed
        for pid in left:  # the failure below must not leave them running either
            os.kill(pid, signal.SIGKILL)
    finally:
        if harness.poll() is None:
            os.killpg(harness.pid, signal.SIGKILL)
            harness.wait(STOP_TIMEOUT)
    stderr = (tmp_path / "gunicorn-orphan.stderr.log").read_text(errors="replace")[-2000:]
    assert not left, (
        f"{left} of master {pids['master']} / worker {pids['worker']} still "
        f"running {ORPHAN_BOUND:.0f} s (bound) after the harness died; "
        f"server stderr:\n{stderr}"
    )
    # The lifeline's SIGTERM, handled by gunicorn's master: the graceful way.
    assert "Handling signal: term" in stderr, f"no graceful stop in the master:\n{stderr}"
    assert took < ORPHAN_BOUND, took


def test_deploy_stack_is_today_plus_its_own_pins():
    today, deploy = STACKS["today"], STACKS["deploy"]
    own = [r for r in deploy["server"] if r not in today["server"]]
    assert deploy["server"][: len(today["server"])] == today["server"]
    assert [r.split("==")[0] for r in own] == ["gunicorn", "packaging"]
    assert deploy["agent"] == today["agent"]
    assert deploy["gevent-websocket"] == today["gevent-websocket"]  # the same verified wheel
    assert LAUNCHER["deploy"] == "gunicorn" and "deploy" not in MAIN_STACKS
    assert {stack for stack, _, _ in sessions()} == {"today", "seed"}


@pytest.mark.parametrize("base", ["nowhere", "b"])
def test_a_bad_base_names_the_stack_and_the_fix(base):
    declared = {
        "a": {"python": "3", "server": ["x==1"]},
        "b": {"base": "c", "server": []},
        "c": {"base": base, "server": []},
    }
    with pytest.raises(ValueError, match=r"\[tool.stacks.c\] base = .*fix pyproject.toml"):
        resolve_stacks(declared)
