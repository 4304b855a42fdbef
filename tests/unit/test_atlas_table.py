"""The atlas's table and its selection of stacks (tests/harness/atlas/), offline.

The results are hand-made from one real SessionResults document, trimmed
(tests/data/atlas/sample-session.json): each cell of it re-labelled, its versions set,
the model's prediction for them recorded as expected and, unless a test says otherwise,
as what both clients observed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from tests.harness.atlas import _changes, _runs, _table
from tests.harness.atlas._plan import PlanStack, load_plan
from tests.harness.cells import Cell
from tests.harness.controls import SERVER_LIVED
from tests.harness.paths import DATA, ROOT
from tests.harness.userstack._errors import StackError
from tests.harness.userstack._predict import predict_cell
from tests.harness.userstack._request import GWS

SESSION = json.loads((DATA / "atlas" / "sample-session.json").read_text())
SAMPLE = DATA / "atlas" / "sample-plan.json"  # four stacks of the eras, in plan.json's schema
PLAN = load_plan(SAMPLE)
STACKS = {s.id: s for s in PLAN.stacks}
IDS = list(STACKS)
VERSIONS = {  # what each sample stack's server reports
    s.id: {
        **{k: v for k, v in s.pins.items() if k != "sentry-sdk"},
        "python": s.python,
    }
    for s in PLAN.stacks
}
# a cell the 2016 stack's vanilla 0.9.5 fails (the streaming iterator never runs), and
# one only its agent's RUM middleware (newrelic 2.66.0.49) makes fail there
STREAMING = (False, False, True)
RUM = (True, False, False)


def record(stack: str, agent: bool, fixed: bool, column: tuple[bool, bool, bool], **seen):
    """One cell of ``stack`` as the cells test records it, observed as ``seen`` says, or
    as the model predicts."""
    data = copy.deepcopy(SESSION["cells"][0])
    cell = Cell(f"pins-{stack}", agent, fixed, *column, handler=STACKS[stack].handler())
    data["cell"] = asdict(cell)
    data["versions"] = VERSIONS[stack]
    inputs = _table.model_inputs(VERSIONS[stack])
    expected = predict_cell(cell, inputs).as_dict()
    data["expected"] = expected
    for o in data["observed"]:
        o.update({k: expected[k] for k in o if k in expected}, **seen)
    data["verdict"] = data["observed"][0]["verdict"]
    return data


def write_stack(root, stack: str, records: list, status: str = _runs.RAN, reason=None):
    where = root / stack
    where.mkdir(parents=True)
    outcome = {"id": stack, "pins": STACKS[stack].pins, "python": STACKS[stack].python}
    outcome.update(status=status, reason=reason, cells=len(records), disagreements=[])
    (where / _runs.OUTCOME).write_text(json.dumps(outcome))
    arms = {}
    for data in records:
        arms.setdefault((data["cell"]["agent"], data["cell"]["fixed"]), []).append(data)
    for (agent, fixed), cells in arms.items():
        doc = {**SESSION, "agent": agent, "fixed": fixed, "cells": cells, "layer": None}
        doc["session"] = f"stack(pins-{stack}, agent={agent}, fixed={fixed})"
        (where / f"stack-{stack}-agent-{agent}-fixed-{fixed}.json").write_text(json.dumps(doc))


@pytest.fixture
def results(tmp_path):
    """s01 (today) and s02 (2021) work on every build; s03 (2016, vanilla 0.9.5) fails
    its streaming cell and, with the agent on, its RUM cell; s04 is never built."""
    for stack in ("s01", "s02", "s03"):
        write_stack(
            tmp_path,
            stack,
            [
                record(stack, agent, fixed, column)
                for agent in (False, True)
                for fixed in (False, True)
                for column in (STREAMING, RUM)
            ],
        )
    write_stack(tmp_path, "s04", [], status=_runs.CANNOT_BUILD, reason="cannot be built: why")
    return tmp_path


def entry(doc, layer, handler, package):
    found = [
        e
        for e in doc["entries"]
        if (e["layer"], e["handler"], e["package"]) == (layer, handler, package)
    ]
    assert len(found) == 1, f"one entry for {layer} {handler} {package}: {found}"
    return found[0]


def test_ranges_merge_and_never_run_picks_are_listed(results, tmp_path):
    doc = _table.build(SAMPLE, results, tmp_path / "atlas.json")
    gevent = entry(doc, "none", "gevent-websocket", "gevent")
    # 21.8.0 (s02) and 26.9.0 (s01) alike; 24.2.1, a pick between them no run had,
    # breaks nothing and is listed
    assert gevent["pass"] == [{"from": "21.8.0", "to": "26.9.0", "runs": ["s01", "s02"]}]
    assert gevent["never_run"] == ["24.2.1"]
    assert [(f["from"], f["to"], f["runs"]) for f in gevent["fail"]] == [
        ("1.1.2", "1.1.2", ["s03"])
    ]
    handler = entry(doc, "none", "gevent-websocket", "gevent-websocket")
    assert [(r["from"], r["to"]) for r in handler["pass"]] == [("0.10.1", "0.10.1")]
    assert [(r["from"], r["to"]) for r in handler["fail"]] == [("0.9.5", "0.9.5")]
    # gevent-websocket alone moved to 0.10.1 runs the iterator: its bisection proved it
    assert handler["fail"][0]["proven_by"] == "history(gevent-websocket)"
    patched = entry(doc, "none", "gevent-websocket+fixed", "gevent")
    assert patched["fail"] == []
    assert patched["pass"] == [{"from": "1.1.2", "to": "26.9.0", "runs": ["s01", "s02", "s03"]}]
    assert json.loads((tmp_path / "atlas.json").read_text()) == doc


def test_a_failure_carries_the_models_cause_its_runs_and_the_rule_that_proved_it(results):
    doc = _table.build(SAMPLE, results, results / "atlas.json")
    fail = entry(doc, "none", "gevent-websocket", "gevent")["fail"][0]
    assert "gevent-websocket 0.9.5 does not iterate the application's result" in fail["cause"]
    # moving gevent alone changes nothing in the model: no rule of gevent decided it
    assert fail["proven_by"] is None
    agent = entry(doc, "newrelic", "gevent-websocket", "newrelic")["fail"]
    assert [(f["from"], f["runs"]) for f in agent] == [("2.66.0.49", ["s03"])]
    # newrelic alone moved to 7.2.4.171 runs the RUM cell: the bisection of newrelic proved it
    assert agent[0]["proven_by"] == "history(newrelic)"
    # the agent is a layer of its own: not a package of the no-layer entries
    assert not [e for e in doc["entries"] if e["layer"] == "none" and e["package"] == "newrelic"]


def test_a_stack_that_was_not_built_is_listed_with_its_reason(results):
    doc = _table.build(SAMPLE, results, results / "atlas.json")
    assert doc["stacks_run"] == 3
    assert doc["stacks_failed_to_build"] == [{"id": "s04", "reason": "cannot be built: why"}]
    table = _table.markdown(doc)
    assert (
        "| none | gevent-websocket | gevent | 21.8.0 – 26.9.0 (s01, s02) | 1.1.2 (s03) [" in table
    )
    assert "- not built: s04: cannot be built: why" in table


def test_a_disagreement_names_the_stack_and_the_cell(tmp_path):
    write_stack(tmp_path, "s02", [record("s02", False, False, STREAMING, verdict="-")])
    docs = _runs.session_docs(tmp_path / "s02")
    found = _runs.disagreements(docs)
    assert [(d["cell"], d["client"]) for d in found] == [
        ("pins-s02 ¬agent ¬fixed ¬rum ¬hello_goodbyer streaming", "python"),
        ("pins-s02 ¬agent ¬fixed ¬rum ¬hello_goodbyer streaming", "node"),
    ]
    outcome = {"id": "s02", "python": "3.9", "status": _runs.RAN, "cells": 1, "seconds": 1.0}
    line = _runs.summary_line({**outcome, "disagreements": found})
    assert "disagrees with the model: s02 stack(pins-s02, agent=False, fixed=False): " in line
    assert _runs.failed([{**outcome, "disagreements": found}]) == ["s02"]
    assert _runs.failed([{**outcome, "disagreements": []}]) == []
    doc = _table.build(SAMPLE, tmp_path, tmp_path / "atlas.json")
    fail = entry(doc, "none", "gevent-websocket", "gevent")["fail"]
    assert fail[0]["cause"] == _table.NOT_PREDICTED


# flask-sock on CPython 2.7: the user-stack command refuses it before building anything
NOT_ON_27 = PlanStack(
    "x04", "2.7", {"Flask": "1.1.4", "gevent": "21.8.0", "flask-sock": "0.7.0"}, 0
)


@pytest.mark.builds  # asks the registry
def test_a_stack_that_cannot_be_served_is_a_result_not_a_crash(tmp_path, capsys):
    before = tmp_path / "x04" / "stack-pins-handler-flask-sock-agent-False.logs"
    before.mkdir(parents=True)  # a previous run's: never read again
    assert _runs.run([NOT_ON_27], tmp_path, tmp_path / "work") == 0
    assert not before.exists()
    outcome = json.loads((tmp_path / "x04" / _runs.OUTCOME).read_text())
    assert outcome["status"] == _runs.CANNOT_BUILD
    assert outcome["reason"].startswith("flask-sock==0.7.0 does not run on CPython 2.7")
    assert "x04 (Python 2.7): cannot-build: flask-sock" in capsys.readouterr().out


def test_a_stack_on_another_handler_is_its_own_entry_with_the_models_causes(tmp_path):
    # s04 pins flask-sock: it drops the streaming view's iterator, and whether the server
    # closes TCP races (the model predicts nothing): both are its sentences, no surprise
    held = record("s04", False, False, (False, False, False), server_closed_tcp=False)
    write_stack(tmp_path, "s04", [held, record("s04", False, False, STREAMING)])
    doc = _table.build(SAMPLE, tmp_path, tmp_path / "atlas.json")
    assert {e["handler"] for e in doc["entries"]} == {"flask-sock"}
    causes = entry(doc, "none", "flask-sock", "flask-sock")["fail"][0]["cause"]
    assert _table.NOT_PREDICTED not in causes
    assert "tcp_close_races" in causes and "flask-sock drops what the view returns" in causes


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_shards_partition_the_plan_in_order(shards):
    chosen = [_runs.select(PLAN, shard=(k, shards)) for k in range(1, shards + 1)]
    flat = [s.id for part in chosen for s in part]
    assert sorted(flat) == sorted(IDS) and len(flat) == len(set(flat))
    for k, part in enumerate(chosen, 1):
        assert all(IDS.index(s.id) % shards == k - 1 for s in part)


def test_sample_and_only_choose_stacks():
    assert [s.id for s in _runs.select(PLAN, sample=2)] == ["s01", "s02"]
    assert [s.id for s in _runs.select(PLAN, only=["s03", "s01"])] == ["s01", "s03"]
    assert STACKS["s04"].handler() != GWS and STACKS["s01"].handler() == GWS


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "1/2/3"])
def test_a_malformed_shard_is_an_error(text):
    with pytest.raises(StackError, match=r"--shard .* is not K/N"):
        _runs.parse_shard(text)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shard", "3/2"], "error: --shard '3/2' is not K/N with 1 <= K <= N; write e.g."),
        (["--only", "s01,zz"], "error: --only zz: no such stack in sample-plan.json; name some"),
        (["--matrix", "0"], "error: --matrix 0: GitHub runs 1 to 256 jobs of a matrix;"),
        (["--matrix", "257"], "error: --matrix 257: GitHub runs 1 to 256 jobs of a matrix;"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, said):
    assert_bad_input(SAMPLE, args, said)


def assert_bad_input(plan, args, said):
    """The command on ``plan`` with ``args`` exits 2 with the one line ``said`` begins."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.harness.atlas", "--plan", str(plan), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(said) and proc.stderr.count("\n") == 1, proc.stderr


def big(stacks: int, hours: float):
    """The sample plan's stacks repeated, with this estimate."""
    plan = copy.deepcopy(PLAN)
    plan.stacks = [replace(PLAN.stacks[i % 4], id=f"x{i:04d}") for i in range(stacks)]
    plan.size.estimated_seconds = round(hours * 3600)
    return plan


def test_the_matrix_has_one_entry_per_shard_with_its_pythons():
    from tests.harness.atlas._cli import matrix

    one = {"include": [{"shard": "1/1", "pythons": ["2.7", "3.9", "3.11"]}]}
    assert json.loads(matrix(PLAN, 2)) == one  # minutes of estimate: one shard
    doc = json.loads(matrix(big(4, 1), 2))  # an hour: two shards of half an hour
    assert doc == {
        "include": [
            {"shard": "1/2", "pythons": ["2.7", "3.11"]},  # s01, s03
            {"shard": "2/2", "pythons": ["3.9", "3.11"]},  # s02, s04
        ]
    }


def test_the_matrix_has_shards_of_about_35_minutes_of_the_estimate_at_most_n():
    from tests.harness.atlas._cli import MAX_SHARDS, SHARD_SECONDS, matrix, shards

    for hours, expected in [(0.1, 1), (10, 18), (100, 172), (1000, MAX_SHARDS)]:
        plan = big(1000, hours)
        assert shards(plan) == expected, hours
        assert hours * 3600 / expected <= SHARD_SECONDS or expected == MAX_SHARDS
        assert len(json.loads(matrix(plan))["include"]) == expected
    assert shards(big(1000, 100), most=32) == 32
    assert shards(big(3, 100)) == 3  # no shard without a stack


@pytest.mark.builds  # asks the registry
def test_a_plan_naming_a_release_the_registry_lacks_is_bad_input(tmp_path):
    plan = tmp_path / "plan.json"
    doc = json.loads(SAMPLE.read_text())
    doc["stacks"] = [{**doc["stacks"][0], "id": "x01"}]
    doc["stacks"][0]["pins"]["gevent"] = "99.0.0"
    plan.write_text(json.dumps(doc))
    said = "error: stack x01: gevent==99.0.0 does not exist on the registry"
    assert_bad_input(plan, ["--only", "x01"], said)
    assert not (_runs.ATLAS_RESULTS / "x01").exists()  # nothing ran


@pytest.mark.builds  # resolves against the registry (uv: nox -s builds passes it)
def test_a_stack_the_resolver_refuses_is_a_result_and_the_others_still_run(tmp_path):
    # Flask 3.1.3 requires Python >= 3.9: uv refuses the stack for 3.8
    pins = {"Flask": "3.1.3", "gevent": "26.9.0", "gevent-websocket": "0.10.1"}
    refused = PlanStack("x03", "3.8", pins, 0)
    assert _runs.run([refused, NOT_ON_27], tmp_path, ROOT / ".cache" / "stacks") == 0
    outcome = json.loads((tmp_path / "x03" / _runs.OUTCOME).read_text())
    assert outcome["status"] == _runs.CANNOT_BUILD, outcome
    assert "flask==3.1.3 depends on Python>=3.9" in outcome["reason"], outcome["reason"]
    assert (tmp_path / "x04" / _runs.OUTCOME).is_file()


def test_a_cell_whose_controls_failed_is_what_the_stack_cannot_serve_not_a_disagreement(
    tmp_path,
):
    """newrelic 1.x in developer mode still asks the collector, so offline its agent is
    never active: the agent's cells are not what they claim, for or against the model."""
    inactive = [record("s03", True, False, c, verdict="-") for c in (STREAMING, RUM)]
    for data in inactive:
        data["controls"] = {**data["controls"], "agent active": False}
    served = [record("s03", False, False, c) for c in (STREAMING, RUM)]
    write_stack(tmp_path, "s03", [*inactive, *served])
    docs = _runs.session_docs(tmp_path / "s03")
    assert _runs.disagreements(docs) == []
    assert _runs.not_served(docs) == [
        {
            "session": "stack(pins-s03, agent=True, fixed=False)",
            "controls": ["agent active"],
            "cells": 2,
        }
    ]
    doc = _table.build(SAMPLE, tmp_path, tmp_path / "atlas.json")
    agent = entry(doc, "newrelic", "gevent-websocket", "newrelic")
    assert [(f["from"], f["cause"]) for f in agent["fail"]] == [
        ("2.66.0.49", f"{_table.CANNOT_SERVE}: agent active")
    ]
    assert agent["fail"][0]["proven_by"] is None


def test_a_refresh_reruns_the_stacks_of_its_new_picks_and_says_what_flips(tmp_path):
    """A new gevent-websocket pick (0.10.1) after 0.9.5: the stacks holding it are the
    ones to rerun, and a cell the model fails at 0.9.5 that works at 0.10.1 flips, with
    the model's cause and the run that proved the rule."""
    old = copy.deepcopy(PLAN)
    old.axes["handler"].values = [
        p for p in old.axes["handler"].values if p.version != f"{GWS}==0.10.1"
    ]
    assert _changes.new_picks(old, PLAN) == {"handler": [f"{GWS}==0.10.1"]}
    again = [s.id for s in _changes.with_new_picks(old, PLAN)]
    assert again == [s.id for s in PLAN.stacks if s.values.get("handler") == f"{GWS}==0.10.1"]
    assert _changes.displaced(old, "handler", f"{GWS}==0.10.1").version == f"{GWS}==0.9.5"
    write_stack(tmp_path, "s02", [record("s02", False, False, STREAMING)])
    lines = _changes.flips(old, PLAN, tmp_path)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"s02: handler {GWS}==0.9.5 -> {GWS}==0.10.1: ")
    assert "verdict - -> + (better)" in lines[0]
    assert "history(gevent-websocket)" in lines[0]
    assert _changes.flips(PLAN, PLAN, tmp_path) == []


def test_what_a_stack_cannot_run_is_listed_in_the_table(results, tmp_path):
    """The user-stack command's line for a layer (or the agent) it cannot run on a stack
    reaches atlas.json and the job summary's table with the stack's id."""
    outcome = results / "s02" / _runs.OUTCOME
    line = "the agent (newrelic==7.2.4.171) cannot run on this stack: the server does not start"
    outcome.write_text(json.dumps({**json.loads(outcome.read_text()), "cannot_run": [line]}))
    doc = _table.build(SAMPLE, results, tmp_path / "atlas.json")
    assert doc["cannot_run"] == [{"id": "s02", "line": line}]
    assert f"- s02: {line}" in _table.markdown(doc)


ABORT = (
    'python: ev_epoll.c:134: epoll_modify: Assertion `("libev: I/O watcher with invalid fd '
    "found in epoll_ctl\", errno != EBADF)' failed."
)


@pytest.mark.parametrize("failed_tests", [1, 2])
def test_a_cell_whose_server_died_is_a_result_with_its_last_words(tmp_path, failed_tests):
    """gevent-ws can abort the process mid-cell (tests/matrix/test_reader_race.py): that
    cell observed nothing and says how the server died; its session is no failed run only
    if pytest failed no other test."""
    died = record("s03", False, False, STREAMING, verdict="-")
    died["controls"] = {**died["controls"], SERVER_LIVED: False}
    died["server_died"] = {"status": -6, "stderr": f"127.0.0.1 - - GET /\n{ABORT}\n"}
    write_stack(tmp_path, "s03", [died, record("s03", False, False, RUM)])
    session = "stack-s03-agent-False-fixed-False"
    junit = f'<testsuites><testsuite failures="{failed_tests}" errors="0" tests="2"/></testsuites>'
    (tmp_path / "s03" / f"{session}.junit.xml").write_text(junit)
    docs = _runs.session_docs(tmp_path / "s03")
    for doc in docs:
        doc["status"] = "failed"
    words = f"exit status -6: {ABORT}"
    unserved = _runs.not_served(docs)
    assert unserved == [
        {
            "session": "stack(pins-s03, agent=False, fixed=False)",
            "controls": [SERVER_LIVED],
            "cells": 1,
            "died": [words],
        }
    ]
    assert _runs.disagreements(docs) == []
    assert bool(_runs.excused(docs, unserved)) == (failed_tests == 1)
    doc = _table.build(SAMPLE, tmp_path, tmp_path / "atlas.json")
    cause = entry(doc, "none", "gevent-websocket", "gevent")["fail"][0]["cause"]
    assert cause == f"{_table.CANNOT_SERVE}: {SERVER_LIVED} (the server died: {words})"
