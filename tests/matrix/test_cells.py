"""The observations: 8 cells of (rum, hello_goodbyer, streaming) for this session.

Each cell starts its own server, proves its toggles are real (positive
controls), runs both real clients, evaluates the seed's criteria and asserts
the observation against the expectation model (tests/harness/cellrun.py).  The
record is kept before any assertion, so a failing cell still lands in the
results file with evidence.
"""

from __future__ import annotations

import pytest

from tests.harness.cellrun import run_cell
from tests.harness.cells import COLUMN_AXES, cells

# The 8 columns of an arm; a test id is the cell's slug over them
# (rum_on-hello_goodbyer_off-streaming_off: no "=", which pytest -k cannot select).
COLUMNS = [{axis: getattr(c, axis) for axis in COLUMN_AXES} for c in cells("today", False, False)]


@pytest.mark.cell
@pytest.mark.parametrize(
    "column",
    COLUMNS,
    ids=[session_cell.slug(COLUMN_AXES) for session_cell in cells("today", False, False)],
)
def test_cell(session, results, column):
    if session.agent is None or session.fixed is None:
        pytest.skip(
            "cells need the session's claim: run through nox, or pass "
            "--agent/--no-agent and --fixed/--no-fixed"
        )
    run_cell(session, results, session.cell(**column))
