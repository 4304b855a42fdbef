"""tests/harness/deploy_compare.py: which deploy cells differ from the matrix rows."""

from __future__ import annotations

import json

from tests.harness import deploy_compare
from tests.harness.cells import cells, session_name, slug


def doc(stack, agent, fixed, change=None):
    """A results document of one session, every cell "+", closed when fixed."""
    records = []
    for cell in cells(stack, agent, fixed):
        observed = [{"client": c, "verdict": "+", "iterable_closed": fixed,
                     "valid_close_frame": True} for c in ("python", "node")]
        record = {"cell": cell.as_dict(), "verdict": "+", "observed": observed}
        if change:
            change(cell, record)
        records.append(record)
    return {"session": session_name(stack, agent, fixed), "stack": stack, "agent": agent,
            "fixed": fixed, "cells": records}


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
    by_cell = {(e["cell"]["rum"], e["cell"]["hello_goodbyer"], e["cell"]["streaming"]):
               e["columns"] for e in found}
    assert by_cell == {(True, False, True): ["verdict"], (True, True, True): ["verdict"],
                       (False, True, False): ["close_frame"],
                       (False, True, True): ["close_frame"]}
    assert all(e["matrix"]["verdict"] == "+" for e in found)


def test_only_the_deployed_arms_are_compared_and_a_missing_cell_is_a_difference():
    matrix = [doc("today", a, f) for a in (False, True) for f in (False, True)]
    deploy = [doc("deploy", True, True, None)]
    deploy[0]["cells"].pop()  # the last cell never ran under gunicorn
    found = deploy_compare.differences(matrix, deploy)
    assert [e["columns"] for e in found] == [["observed"]]
    assert found[0]["deploy"] is None and found[0]["matrix"]["closed"] is True
    assert (found[0]["cell"]["agent"], found[0]["cell"]["fixed"]) == (True, True)


def test_load_reads_each_kind_from_its_results_files(tmp_path):
    for stack in ("today", "deploy"):
        path = tmp_path / (slug(session_name(stack, False, True)) + ".json")
        path.write_text(json.dumps(doc(stack, False, True)))
    assert [d["stack"] for d in deploy_compare.load(tmp_path, "deploy")] == ["deploy"]
    assert [d["stack"] for d in deploy_compare.load(tmp_path, "matrix")] == ["today"]
