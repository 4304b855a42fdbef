"""What an upgrade changes (tests/harness/userstack/_upgrade.py, `nox -s upgrade`).

The model's answer (--predict, offline, in under a second), the direction of a change
(which a dependency bot's gate reads as the exit status), the proof a change cites, bad
input; and, marked ``stacks`` (the registry, two server environments each), two real
runs of the 2016 stack on CPython 2.7: one move that changes a cell, one that changes
none.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness.cells import HISTORY, Cell
from tests.harness.paths import ROOT
from tests.harness.records import NOT_STARTED
from tests.harness.userstack._upgrade import Change, proof_of

EXAMPLES = ROOT / "tests" / "data" / "stacks"
STACK_2016 = EXAMPLES / "2016-py27.txt"
# The cell newrelic 2.68.0.50 flips on the 2016 stack: the agent's RUM middleware is a
# lazy layer before it, and vanilla 0.9.5 never runs it.
RUM_CELL = "agent ¬fixed rum ¬hello_goodbyer ¬streaming"


def _upgrade(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "tests.harness.userstack", "--upgrade", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _row(out, cell, column):
    """The side-by-side row of one cell's column, or None."""
    rows = [
        ln for ln in out.splitlines() if ln.strip().startswith(cell + " ") and f" {column} " in ln
    ]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def test_predict_newrelic_across_its_threshold_improves_the_rum_cell_exit_0(tmp_path):
    proc = _upgrade(
        "-r", str(STACK_2016), "newrelic==2.68.0.50", "--predict", "--work", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = _row(proc.stdout, RUM_CELL, "verdict")
    assert row and "- -> +" in row and "better" in row, proc.stdout
    proven = HISTORY["newrelic"]["thresholds"]["agent_skips_websockets"]
    assert f"proven by history(newrelic): {proven}" in row
    assert _row(proc.stdout, "¬agent ¬fixed rum ¬hello_goodbyer ¬streaming", "verdict") is None
    assert "0 worse" in proc.stdout and not any(tmp_path.iterdir())  # nothing built


def test_predict_newrelic_back_across_its_threshold_worsens_the_rum_cell_exit_1(tmp_path):
    newer = tmp_path / "2016-newer-agent.txt"
    newer.write_text(STACK_2016.read_text().replace("newrelic==2.66.0.49", "newrelic==2.68.0.50"))
    proc = _upgrade("-r", str(newer), "newrelic==2.66.0.49", "--predict")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = _row(proc.stdout, RUM_CELL, "verdict")
    assert row and "+ -> -" in row and "worse" in row, proc.stdout
    # the agent starts a transaction for upgrades again, which vanilla never finishes
    assert "n/a -> no" in _row(proc.stdout, RUM_CELL, "layer_finished")
    assert proc.stdout.rstrip().endswith("exit 1: an observation gets worse")


# A stack of the sentry-hold rule's range (py3.8): its gevent axis flips at 20.12.0 with
# Werkzeug at 2.3.8, so moving gevent across it is a layer's change, not a stack cell's.
SENTRY_2020 = """\
Flask==2.2.5
Werkzeug==2.3.8
gevent==20.9.0
gevent-websocket==0.10.1
sentry-sdk==2.75.0
"""


def test_predict_a_move_that_makes_a_layer_hold_tcp_is_worse_exit_1(tmp_path):
    stack = tmp_path / "sentry-2020.txt"
    stack.write_text(SENTRY_2020)
    proc = _upgrade("-r", str(stack), "gevent==20.12.0", "--predict")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    streaming = "¬agent ¬fixed ¬rum ¬hello_goodbyer streaming layer:sentry"
    row = _row(proc.stdout, streaming, "server_closed_tcp")
    assert row and "yes -> no" in row and "worse" in row, proc.stdout
    assert "proven by history(sentry-hold): 20.12.0" in row
    assert "+ -> -" in _row(proc.stdout, streaming, "verdict")
    # the stack's own cells do not change: only the layer's do, on vanilla only
    rows = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith(("agent", "¬agent"))]
    assert len(rows) == 10 and all("layer:sentry" in ln and "¬fixed" in ln for ln in rows)


def test_predict_moving_werkzeug_below_the_rule_frees_the_layer_exit_0(tmp_path):
    stack = tmp_path / "sentry-2020.txt"
    stack.write_text(SENTRY_2020.replace("gevent==20.9.0", "gevent==20.12.0"))
    proc = _upgrade("-r", str(stack), "Werkzeug==2.2.3", "--predict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = _row(proc.stdout, "¬agent ¬fixed ¬rum ¬hello_goodbyer streaming layer:sentry", "verdict")
    assert row and "- -> +" in row and "better" in row, proc.stdout
    assert "proven by history(sentry-hold): 2.3.0" in row


def test_predict_gevent_websocket_0_10_improves_13_cells(tmp_path):
    proc = _upgrade("-r", str(STACK_2016), "gevent-websocket==0.10", "--predict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flipped = [ln for ln in proc.stdout.splitlines() if " verdict " in ln and "- -> +" in ln]
    assert len(flipped) == 13 and all(
        "proven by history(gevent-websocket): 0.10" in ln for ln in flipped
    ), proc.stdout


@pytest.mark.parametrize(
    ("column", "before", "after", "direction"),
    [
        ("verdict", "+", "-", -1),
        ("verdict", "-", "+", 1),
        ("verdict", "+", "~", -1),
        ("closed", True, False, -1),
        ("valid_close_frame", True, False, -1),
        ("server_closed_tcp", True, False, -1),
        ("server_closed_tcp", False, True, 1),
        ("layer_finished", True, False, -1),
        ("layer_finished", None, False, -1),
        ("layer_finished", False, None, 1),
        ("layer_finished", True, None, 0),
        # never started is as unfinished as never finished
        ("layer_finished", True, NOT_STARTED, -1),
        ("layer_finished", None, NOT_STARTED, -1),
        ("layer_finished", NOT_STARTED, True, 1),
        ("layer_finished", False, NOT_STARTED, 0),
    ],
)
def test_the_direction_of_a_change(column, before, after, direction):
    cell = Cell("", True, False, True, False, False)
    assert Change(cell, column, before, after).direction == direction


def test_a_rule_without_a_bisection_is_unproven(monkeypatch):
    change = Change(Cell("", True, False, True, False, False), "verdict", "-", "+")
    before = {"gevent-websocket": "0.9.5", "newrelic": "2.66.0.49"}
    after = {**before, "newrelic": "2.68.0.50"}
    assert proof_of(change, before, after) == "proven by history(newrelic): 2.68.0.50"
    monkeypatch.setitem(HISTORY, "newrelic", {})
    assert proof_of(change, before, after) == (
        "unproven (no bisection of newrelic between 2.66.0.49 and 2.68.0.50)"
    )
    # a change the model does not make is said to be one
    assert proof_of(change, before, before) == "not predicted by the model"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-r", str(STACK_2016), "requestz==1.0"], "is not in"),
        (["-r", str(STACK_2016), "gevnet==1.2.2"], "close to its pin gevent"),
        (["-r", str(STACK_2016), "gevent>=1.2"], "is not a package to move"),
        (["-r", str(STACK_2016), "gevent==1.2.*"], "is not a version"),
        (["-r", str(STACK_2016)], "no package to move"),
        (["newrelic==2.68.0.50"], "pass -r FILE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, says):
    proc = _upgrade(*args, "--predict")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


def test_moving_an_ignored_or_unmoved_pin_runs_nothing_and_exits_0():
    proc = _upgrade(
        "-r", str(EXAMPLES / "2018-py27.txt"), "requests==2.19.0", "gevent==1.2.2", "--predict"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "requests decides no cell" in proc.stdout
    assert "gevent is pinned to 1.2.2 already" in proc.stdout
    assert "nothing moves" in proc.stdout


@pytest.mark.builds  # asks the registry
def test_a_release_that_does_not_exist_is_named_with_its_neighbours():
    proc = _upgrade("-r", str(STACK_2016), "newrelic==2.67")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the nearest releases are 2.66.0.49 and 2.68.0.50" in proc.stderr


@pytest.mark.builds  # asks the registry
def test_a_name_alone_moves_to_the_newest_release():
    proc = _upgrade("-r", str(STACK_2016), "gevent-websocket", "--predict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # gevent-websocket's last release is from 2017 (pyproject's today stack pins it)
    assert "gevent-websocket 0.9.5 -> 0.10.1" in proc.stdout


# The real runs: each side is `nox -s stack`'s run of its pins (their envs are reused by a
# second run); the results go to a temporary directory, not beside the sessions'.
@pytest.mark.stacks
def test_a_real_newrelic_move_shows_the_flipping_cell(tmp_path):
    proc = _upgrade(
        "-r",
        str(STACK_2016),
        "newrelic==2.68.0.50",
        "--python",
        "2.7",
        "--results",
        str(tmp_path),
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    row = _row(proc.stdout, RUM_CELL, "verdict")
    assert row and "- -> +" in row and "proven by history(newrelic): 2.68.0.50" in row, proc.stdout[
        -3000:
    ]
    assert len(list(tmp_path.glob("stack-2016-py27-newrelic-2-68-0-50-*.json"))) == 4


@pytest.mark.stacks
def test_a_real_patch_release_that_changes_nothing(tmp_path):
    proc = _upgrade(
        "-r",
        str(STACK_2016),
        "werkzeug==0.11.15",
        "--python",
        "2.7",
        "--results",
        str(tmp_path),
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "no cell or layer observation changes" in proc.stdout
    # both sides ran every cell: "no change" is a comparison of 32 observed cells each
    assert proc.stdout.count("32 cells in") == 2, proc.stdout[-3000:]
