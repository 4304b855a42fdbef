"""The one cell identity (tests/harness/cells.py Cell) and the records' schema
(tests/harness/records.py): every form of a cell reads back to the cell, and a
file of another schema is one line naming the file and the command that rewrites it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.harness import records
from tests.harness.cells import (
    COLUMN_AXES,
    STACKS,
    Cell,
    cells,
    node_id,
    sessions,
)
from tests.harness.records import (
    SCHEMA,
    CellRecord,
    ConformanceResults,
    HistoryResults,
    Phases,
    SchemaError,
    SessionResults,
)

EVERY_CELL = [
    c for stack in STACKS for a in (False, True) for f in (False, True) for c in cells(stack, a, f)
]


def test_the_main_job_has_64_distinct_cells_with_distinct_labels_and_slugs():
    main = [c for stack, a, f in sessions() for c in cells(stack, a, f)]
    assert len(main) == len({c.label() for c in main}) == len({c.slug() for c in main}) == 64


@pytest.mark.parametrize("cell", EVERY_CELL, ids=lambda c: c.slug())
def test_a_label_and_a_slug_parse_back_to_the_cell(cell):
    assert Cell.parse(cell.label()) == cell
    assert Cell.parse(cell.slug()) == cell
    assert Cell.from_dict(json.loads(json.dumps(cell.as_dict()))) == cell
    assert (
        Cell.parse(cell.label(omit=("stack", "fixed")), stack=cell.stack, fixed=cell.fixed) == cell
    )
    within = cell.slug(COLUMN_AXES)  # the pytest id within the session
    assert Cell.parse(within, stack=cell.stack, agent=cell.agent, fixed=cell.fixed) == cell
    assert "=" not in within and " " not in cell.slug(), "pytest -k selects no '=' nor space"


def test_the_documented_test_id_and_label():
    cell = Cell("seed", True, False, True, False, False)
    assert node_id(cell) == (
        "tests/matrix/test_cells.py::test_cell[rum_on-hello_goodbyer_off-streaming_off]"
    )  # README's -k
    assert cell.label() == "seed agent ¬fixed rum ¬hello_goodbyer ¬streaming"


def test_an_axis_is_one_more_field_with_a_default():
    @dataclass(frozen=True, order=True)
    class WithHandler(Cell):
        handler: str = "gevent-websocket"

    plain = WithHandler("today", True, False, True, False, True)
    other = WithHandler("today", True, False, True, False, True, handler="flask-sock")
    assert plain.slug() == Cell("today", True, False, True, False, True).slug(), (
        "an axis at its default leaves every existing id as it was"
    )
    assert other.label().endswith(" handler:flask-sock")
    assert other.slug().endswith("-handler_flask-sock")
    for cell in (plain, other):
        assert WithHandler.parse(cell.label()) == cell == WithHandler.parse(cell.slug())
    assert WithHandler.from_dict(Cell("today", True, False, True, False, True).as_dict()) == plain


def test_text_that_is_not_a_cell_is_one_error_naming_the_forms():
    with pytest.raises(ValueError, match=r"'agent rum' is not a cell .* expected a label like"):
        Cell.parse("agent rum")


def test_the_phase_split_adds_up_to_the_cell():
    phases = Phases.split(ready_after=0.25, exchanged_after=0.6, duration=0.8)
    assert (phases.start, phases.exchange, phases.stop) == (0.25, 0.35, 0.2)


def session_doc(**extra):
    return {
        "schema": SCHEMA,
        "session": "matrix(agent=False, fixed=True)",
        "stack": "today",
        "agent": False,
        "fixed": True,
        "status": "passed",
        "cells": [],
        **extra,
    }


@pytest.mark.parametrize(
    ("cls", "doc", "rerun"),
    [
        (SessionResults, session_doc(), '`nox -s "matrix(agent=False, fixed=True)"`'),
        (
            ConformanceResults,
            {"targets": {}, "wstest": "0.10.9", "duration": 1},
            "`nox -s conformance`",
        ),
        (HistoryResults, {"packages": {}}, '`nox -s "history(<package>)"`'),
    ],
)
@pytest.mark.parametrize("schema", [None, 1, SCHEMA + 1])
def test_a_file_of_another_schema_is_one_line_naming_the_file_and_its_command(
    tmp_path, cls, doc, rerun, schema
):
    path = tmp_path / "results.json"
    without = {k: v for k, v in doc.items() if k != "schema"}
    path.write_text(json.dumps({**without, "schema": schema} if schema else without))
    how = records.session_rerun if cls is SessionResults else rerun
    with pytest.raises(SchemaError) as raised:
        records.read(path, cls, how)
    message = str(raised.value)
    assert message == (
        f"{path}: schema {schema or 1}, this report reads schema {SCHEMA}: rerun {rerun}"
    )
    assert "\n" not in message
    path.write_text(json.dumps({**doc, "schema": SCHEMA}))
    assert isinstance(records.read(path, cls, how), cls)


def test_a_record_round_trips_through_its_file_and_ignores_unknown_keys(tmp_path):
    cell = Cell("today", False, True, True, False, True)
    record = {
        "cell": cell.as_dict(),
        "seed": "+",
        "verdict": "+",
        "observed": [
            {
                "client": "node",
                "rid": 3,
                "view": True,
                "iterator": True,
                "middleware": None,
                "verdict": "+",
                "iterable_closed": True,
                "valid_close_frame": False,
            }
        ],
        "expected": {"verdict": "+"},
        "facts": {},
        "controls": {"agent loaded": True},
        "versions": {"newrelic": None},
        "page_status": 200,
        "transcripts": [],
        "server_events": [],
        "server_ready_after": 0.2,
        "client_durations": {"node": 0.3},
        "duration": 0.6,
        "launcher": "app",
        "phases": {"start": 0.2, "exchange": 0.3, "stop": 0.1},
        "from_the_future": 1,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(session_doc(cells=[record])))
    doc = records.read(path, SessionResults, records.session_rerun)
    (found,) = doc.cells
    assert isinstance(found, CellRecord) and found.cell == cell
    assert found.outcome() == records.Outcome("+", True, False)
    records.write(path, doc)
    assert records.read(path, SessionResults, records.session_rerun) == doc
