"""The pytest command of a run of cells: the one place that spells out what a run claims
(its stack, arm, handler, layer, server interpreter, pins or releases) and where its
results go.  A nox session runs it in its venv (noxfile.py run_pytest); a user stack
(tests/harness/userstack/_run.py) and a history probe (tests/harness/history.py) run it
as a child of the harness's interpreter (``child_command``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The matrix's layer cells: `nox -s "layer(...)"`, a handler session's layers, a user
# stack's layers and a layer rule's history probes all run this module.
LAYERS_PATH = "tests/matrix/test_layers.py"
CELLS_PATH = "tests/matrix/test_cells.py"


@dataclass(frozen=True)
class CellsRun:
    """What one pytest run of cells is: the claim its positive controls check."""

    paths: Sequence[str]  # test files or node ids
    stack: str
    agent: bool
    fixed: bool
    server_python: str | Path
    results: Path  # the run's SessionResults
    logs: Path  # the servers' logs
    name: str | None = None  # the session named in the results (default: conftest's)
    junit: Path | None = None
    handler: str | None = None  # one of [tool.handlers]; None: gevent-websocket
    layer: str | None = None  # one of [tool.layers]
    pins: Sequence[str] = ()  # a user stack's own NAME==VERSION
    releases: Sequence[str] = ()  # a history probe's NAME==VERSION in place of a pin
    workers: Sequence[str] = field(default_factory=list)  # pytest-xdist's -n N, if any

    def args(self) -> list[str]:
        """pytest's arguments, without the interpreter."""
        return [
            *self.paths,
            *self.workers,
            *(["--handler", self.handler] if self.handler else []),
            *(["--layer", self.layer] if self.layer else []),
            "--stack",
            self.stack,
            "--agent" if self.agent else "--no-agent",
            "--fixed" if self.fixed else "--no-fixed",
            "--server-python",
            str(self.server_python),
            *(["--session-name", self.name] if self.name else []),
            "--results",
            str(self.results),
            *(["--junitxml", str(self.junit)] if self.junit else []),
            "--server-logs",
            str(self.logs),
            *(a for pin in self.pins for a in ("--pin", pin)),
            *(f"--release={r}" for r in self.releases),
        ]


def child_command(run: CellsRun) -> list[str]:
    """The run as a child of this interpreter: quiet, no cache written into the tree."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        *run.args(),
    ]
