"""A child pytest, for tests that interrupt or kill a run and watch what it leaves:
started in a session of its own, watched through its servers' event logs, ended
within a bound (tests/matrix/test_reliability.py, tests/matrix/test_lifeline.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.paths import ROOT
from tests.harness.server import STOP_TIMEOUT

PYTEST_START_BOUND = 60.0  # s for a child pytest to reach the moment we interrupt
INTERRUPT_BOUND = 2 * STOP_TIMEOUT + 10.0  # s from SIGINT to the child pytest's exit
HOLD_BOUND = 60.0  # s a serving child holds its websocket before giving up

# Python leaves SIGINT alone when it starts with SIGINT ignored (as a background
# job of a non-interactive shell does): install the KeyboardInterrupt handler
# explicitly so that the child behaves as it would at a terminal.
CHILD_PYTEST = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


def child_pytest(args: list[str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """A child pytest, in a session of its own (so that we can Ctrl-C its whole group)."""
    argv = [sys.executable, "-c", CHILD_PYTEST, "-p", "no:cacheprovider", "-q", *args]
    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pass  # a line still being written
    return events


def wait_event(
    path: Path,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
    child: subprocess.Popen[bytes],
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(path):
            if predicate(event):
                return event
        if child.poll() is not None:
            break
        time.sleep(0.02)
    child_output = finish(child)
    raise AssertionError(
        f"expected {what} in {path} within {timeout:.0f} s (bound); child "
        f"pytest status {child.returncode}:\n{child_output[-3000:]}"
    )


def finish(child: subprocess.Popen[bytes], timeout: float = INTERRUPT_BOUND) -> str:
    """The child's output; killed (its whole group) if it outlives `timeout`."""
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=STOP_TIMEOUT)
        out += f"\n[killed: still running {timeout:.0f} s (bound) after the fault]".encode()
    return out.decode("utf-8", "replace")
