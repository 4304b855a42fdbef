"""``python -m tests.harness.stacklines``: one user stack per Werkzeug major line.

Runs tests/harness/userstack/ on each ``[[line]]`` of tests/data/stacks/lines.toml
(its requirements file, on its Python; none named: this interpreter), JOBS lines at a
time, each in a process of its own whose output is printed whole when it ends, and
exits non-zero if any stack could not be built (2) or any cell disagreed with the
model or a positive control failed, or a layer the line names (``layers``) did not have
its cells run on each build (1).  The `stacks` session calls it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from . import records
from .cells import BOOLS, slug
from .paths import DATA, RESULTS, ROOT
from .records import SchemaError, SessionResults
from .userstack._predict import LAYER_COLUMNS
from .userstack._request import stack_name
from .userstack._run import layer_session_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli on older interpreters
    import tomli as tomllib

LINES = DATA / "stacks" / "lines.toml"
# Lines at once: a line's cells mostly wait on their servers and clients, and its
# resolution and build on the registry and the installers.
JOBS = 2
# s for one line (resolution, build, its cells): a safety net; hitting it fails the line.
LINE_BOUND = 1200.0
STOP_TIMEOUT = 10.0  # s a line's processes get after SIGTERM, before SIGKILL
POLL = 0.1  # s between looks at a stopping process group: the kernel tells no one
EXIT_BOUND = 1  # a line that ran over LINE_BOUND: its cells did not all agree in time
# the lines' process groups (each its own session), for an interrupt; once STOPPING is
# set (under LOCK), no line starts
RUNNING: set[subprocess.Popen[str]] = set()
LOCK = threading.Lock()
STOPPING = threading.Event()


def lines(path: Path = LINES) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = tomllib.loads(path.read_text())["line"]
    return found


def layers_not_run(file: Path, layers: list[str], results: Path) -> list[str]:
    """Why a layer the line names did not have its cells run and pass on each build."""
    name = stack_name(file.stem)
    problems = []
    for layer in layers:
        for fixed in BOOLS:
            session = layer_session_name(name, layer, fixed)
            path = results / f"{slug(session)}.json"
            try:
                doc = records.read(path, SessionResults, "nox -s stacks")
            except (OSError, SchemaError) as exc:
                problems.append(f"{session}: no results ({exc})")
                continue
            if doc.status != "passed" or len(doc.cells) != len(LAYER_COLUMNS):
                problems.append(
                    f"{session}: expected {len(LAYER_COLUMNS)} cells passed, got "
                    f"{len(doc.cells)} with status {doc.status} ({path})"
                )
    return problems


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the line's process group (userstack and its pytest runs, which stop
    their servers); whatever is left of it after STOP_TIMEOUT gets SIGKILL."""
    deadline = time.monotonic() + STOP_TIMEOUT
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        # the group outlives its leader while a pytest run tears down
        while time.monotonic() < deadline:
            proc.poll()  # reaps the leader: a zombie would keep the group alive
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(POLL)
        deadline = time.monotonic() + STOP_TIMEOUT


def run_line(argv: list[str]) -> tuple[int, str, float]:
    """``python -m tests.harness.userstack ARGV``: its exit status, output and seconds."""
    started = time.monotonic()
    with LOCK:
        if STOPPING.is_set():
            return EXIT_BOUND, "stacks: interrupted before this line started\n", 0.0
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.userstack", *argv],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        RUNNING.add(proc)
    try:
        out, _ = proc.communicate(timeout=LINE_BOUND)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        _stop(proc)
        out, _ = proc.communicate()
        out += f"stacks: the line ran over {LINE_BOUND:.0f} s (bound); its processes were stopped\n"
        status = EXIT_BOUND
    finally:
        with LOCK:
            RUNNING.discard(proc)
    return status, out, time.monotonic() - started


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.stacklines", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lines", type=Path, default=LINES)
    parser.add_argument("--work", type=Path, default=None, help="passed to userstack")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="passed to userstack (each stack's sessions are named after it)",
    )
    args = parser.parse_args(argv)
    by_werkzeug = {line["werkzeug"]: line for line in lines(args.lines)}
    commands = {
        line["werkzeug"]: [
            "-r",
            str(args.lines.parent / line["file"]),
            *(["--python", line["python"]] if "python" in line else []),
            *(["--work", str(args.work)] if args.work else []),
            *(["--results", str(args.results)] if args.results else []),
        ]
        for line in lines(args.lines)
    }
    # nox stops a session with SIGTERM: the lines' processes go with this one.
    signal.signal(signal.SIGTERM, _interrupt)
    outcome = {}

    def show(werkzeug: str, out: str, note: str = "") -> None:
        print(f"== Werkzeug {werkzeug}{note}: {' '.join(commands[werkzeug])}\n{out}", end="")
        sys.stdout.flush()

    with ThreadPoolExecutor(JOBS) as pool:
        futures = {werkzeug: pool.submit(run_line, cmd) for werkzeug, cmd in commands.items()}
        try:
            for werkzeug, future in futures.items():  # printed in the file's order
                status, out, seconds = future.result()
                line = by_werkzeug[werkzeug]
                missing = layers_not_run(
                    args.lines.parent / line["file"],
                    line.get("layers", []),
                    args.results or RESULTS,
                )
                show(werkzeug, out + "".join(f"stacks: {why}\n" for why in missing))
                outcome[werkzeug] = (status or (1 if missing else 0), seconds)
        except KeyboardInterrupt:
            # a second SIGTERM (`timeout` signals its whole group) must not cut the stop short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with LOCK:
                STOPPING.set()
                stopped = list(RUNNING)
            for proc in stopped:
                _stop(proc)
            for werkzeug, future in futures.items():  # the rest, as far as each got
                if werkzeug not in outcome and not future.cancel():
                    show(werkzeug, future.result()[1], " (interrupted)")
            raise
    print(
        "stacks: "
        + ", ".join(
            f"Werkzeug {w} {'ok' if s == 0 else f'exit {s}'} ({t:.0f} s)"
            for w, (s, t) in outcome.items()
        )
    )
    return max((s for s, _ in outcome.values()), default=0)


if __name__ == "__main__":
    sys.exit(main())
