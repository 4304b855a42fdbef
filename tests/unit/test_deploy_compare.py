"""tests/harness/deploy_compare.py: which deploy cells differ from the matrix rows."""

from __future__ import annotations

from tests.harness import deploy_compare, records
from tests.harness.cells import cells, session_name, slug
from tests.harness.records import SessionResults


def doc(stack, agent, fixed, change=None):
    """The SessionResults of one session, every cell "+", closed when fixed."""
    found = []
    for cell in cells(stack, agent, fixed):
        observed = [
            {
                "client": c,
                "rid": 1,
                "view": True,
                "iterator": None,
                "middleware": None,
                "verdict": "+",
                "iterable_closed": fixed,
                "valid_close_frame": True,
            }
            for c in ("python", "node")
        ]
        record = {
            "cell": cell.as_dict(),
            "seed": "+",
            "verdict": "+",
            "observed": observed,
            "expected": {},
            "facts": {},
            "controls": {},
            "versions": {},
            "page_status": 200,
            "transcripts": [],
            "server_events": [],
            "server_ready_after": 0.2,
            "client_durations": {},
            "duration": 0.6,
            "launcher": "gunicorn" if stack == "deploy" else "app",
            "phases": {"start": 0.2, "exchange": 0.3, "stop": 0.1},
        }
        if change:
            change(cell, record)
        found.append(record)
    return records.from_dict(
        SessionResults,
        {
            "session": session_name(stack, agent, fixed),
            "stack": stack,
            "agent": agent,
            "fixed": fixed,
            "status": "passed",
            "cells": found,
        },
    )


def test_the_same_rows_make_no_difference():
    matrix = [doc("today", a, f) for a in (False, True) for f in (False, True)]
    deploy = [doc("deploy", a, f) for a in (False, True) for f in (False, True)]
    assert deploy_compare.differences(matrix, deploy) == []


def test_each_column_that_differs_is_named():
    def streaming_differs(cell, record):
        if cell.streaming and cell.rum:
            record["verdict"] = "-"
            record["observed"][1]["iterable_closed"] = True  # one client only: not "closed"
        if cell.hello_goodbyer and not cell.rum:
            record["observed"][0]["valid_close_frame"] = False

    matrix = [doc("today", True, False)]
    deploy = [doc("deploy", True, False, streaming_differs)]
    found = deploy_compare.differences(matrix, deploy)
    by_cell = {
        (e["cell"].rum, e["cell"].hello_goodbyer, e["cell"].streaming): e["columns"] for e in found
    }
    assert by_cell == {
        (True, False, True): ["verdict"],
        (True, True, True): ["verdict"],
        (False, True, False): ["valid_close_frame"],
        (False, True, True): ["valid_close_frame"],
    }
    assert all(e["matrix"].verdict == "+" for e in found)


def test_only_the_deployed_arms_are_compared_and_a_missing_cell_is_a_difference():
    matrix = [doc("today", a, f) for a in (False, True) for f in (False, True)]
    deploy = [doc("deploy", True, True, None)]
    deploy[0].cells.pop()  # the last cell never ran under gunicorn
    found = deploy_compare.differences(matrix, deploy)
    assert [e["columns"] for e in found] == [["observed"]]
    assert found[0]["deploy"] is None and found[0]["matrix"].closed is True
    assert found[0]["cell"].arm == (True, True)


def test_load_reads_each_stack_from_its_results_files(tmp_path):
    for stack in ("today", "deploy"):
        path = tmp_path / (slug(session_name(stack, False, True)) + ".json")
        records.write(path, doc(stack, False, True))
    assert [d.stack for d in deploy_compare.load(tmp_path, "deploy")] == ["deploy"]
    assert [d.stack for d in deploy_compare.load(tmp_path, "today")] == ["today"]
