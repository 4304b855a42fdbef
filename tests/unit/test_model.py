"""Harness unit tests: the seed's table as data, and the expectation model."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.harness.cells import (
    SEED_WITH_AGENT,
    SEED_WITHOUT_AGENT,
    STACKS,
    Cell,
    cells,
    parse_seed_list,
    seed_table,
)
from tests.harness.defects import GWS_READER_ABORT
from tests.harness.model import StackFacts, predict
from tests.harness.paths import ROOT
from tests.harness.records import NOT_STARTED

SEED_DIR = ROOT.parent / "shared" / "seed"


def pinned_versions(stack, agent, fixed):
    pins = {r.split("==")[0].lower(): r.split("==")[1] for r in STACKS[stack]["agent"]}
    gws = STACKS[stack]["gevent-websocket"]["version"] + ("+fixed" if fixed else "")
    return {"gevent-websocket": gws, "newrelic": pins["newrelic"] if agent else None}


def test_transcription_matches_the_seed_file():
    files = sorted(SEED_DIR.glob("*.txt"))
    if not files:
        pytest.skip(f"the seed is not beside this checkout ({SEED_DIR})")
    text = files[0].read_text()
    item = r"1\. ((?:True|False)(?:,(?:True|False)){3}: [+-])"
    lines = re.findall(item, text)
    assert len(lines) == 32, f"expected the seed's 32 numbered items, found {len(lines)}"
    assert parse_seed_list("\n".join(lines[:16])) == parse_seed_list(SEED_WITH_AGENT)
    assert parse_seed_list("\n".join(lines[16:])) == parse_seed_list(SEED_WITHOUT_AGENT)


def test_seed_table_has_32_distinct_cells():
    assert len(seed_table()) == 32


@pytest.mark.parametrize("agent", [True, False])
@pytest.mark.parametrize("fixed", [True, False])
def test_model_on_the_2016_stack_predicts_the_seed(agent, fixed):
    facts = StackFacts.from_versions(pinned_versions("seed", agent, fixed))
    for cell in cells("seed", agent, fixed):
        assert predict(cell, facts).verdict == seed_table()[(agent, *cell.seed_key)], cell


@pytest.mark.parametrize("agent", [True, False])
@pytest.mark.parametrize("fixed", [True, False])
def test_model_on_todays_stack_predicts_every_cell_passes(agent, fixed):
    facts = StackFacts.from_versions(pinned_versions("today", agent, fixed))
    assert {predict(c, facts).verdict for c in cells("today", agent, fixed)} == {"+"}
    assert facts.handler_closes == fixed


@pytest.mark.parametrize(
    "newrelic, lazy",
    [
        ("2.66.0.49", True),  # last release that wraps websocket requests in lazy RUM
        ("2.68.0.50", False),  # _is_websocket: upgrades are skipped (nox -s "history(newrelic)")
        ("2.82.0.62", False),  # RUM made eager: unobservable on websockets, not in the model
        ("14.1.0", False),
        (None, False),
    ],
)
def test_agent_facts_follow_the_release_history(newrelic, lazy):
    facts = StackFacts.from_versions({"gevent-websocket": "0.9.5", "newrelic": newrelic})
    assert facts.agent_rum_lazy_on_websockets is lazy


def test_the_model_can_predict_a_failure_on_todays_handler_only_if_it_stops_iterating():
    # The model is a hypothesis, not a table: change one fact, the prediction moves.
    cell = Cell("today", True, False, True, False, False)
    assert predict(cell, StackFacts(True, False, True)).verdict == "+"
    assert predict(cell, StackFacts(False, False, True)).verdict == "-"
    assert predict(cell, StackFacts(False, False, False)).verdict == "+"


@pytest.mark.parametrize(
    "gws, iterates",
    [
        ("0.9.5", False),
        ("0.10", True),
        ("0.10.0", True),
        ("0.10.1", True),
        ("0.9.5+fixed", True),
    ],
)
def test_handler_iterates_from_the_registrys_spelling_of_the_release(gws, iterates):
    # The registry calls it "0.10": as a .release tuple (0, 10) < (0, 10, 0), which made
    # the model predict a non-iterating 0.10 (found by `nox -s "history(gevent-websocket)"`).
    facts = StackFacts.from_versions({"gevent-websocket": gws, "newrelic": None})
    assert facts.handler_iterates is iterates


# -- other handlers: the model from [tool.handlers.<name>.model] ----------------


def test_a_handler_that_drops_the_views_result_fails_exactly_the_streaming_cells():
    from tests.harness.cells import cells

    facts = StackFacts.from_versions({"newrelic": "14.1.0"}, "flask-sock")
    for cell in cells("today", True, False):
        got = predict(cell, facts)
        assert got.verdict == ("-" if cell.streaming else "+"), cell.label()
        assert got.iterator is (False if cell.streaming else None)


@pytest.mark.parametrize(
    ("handler", "layer", "allowed"),
    [
        ("gevent-ws", "ddtrace", True),
        ("gevent-ws", "sentry", False),
        ("flask-sock", "ddtrace", False),
    ],
)
def test_only_a_reader_left_on_a_kept_request_may_kill_the_server(handler, layer, allowed):
    facts = StackFacts.from_versions({}, handler)
    for cell in cells("today", False, False):
        got = predict(replace(cell, handler=handler, layer=layer), facts)
        assert got.may_die == (GWS_READER_ABORT if allowed else ""), cell.label()


def test_a_handler_without_a_close_frame_is_predicted_so():
    from tests.harness.cells import cells

    facts = StackFacts.from_versions({}, "gevent-ws")
    assert all(
        predict(c, facts).verdict == "+" and not predict(c, facts).valid_close_frame
        for c in cells("today", False, False)
    )


def test_a_handler_without_its_model_properties_is_one_clear_error():
    with pytest.raises(KeyError, match=r"\[tool.handlers.nope.model\]"):
        StackFacts.from_versions({}, "nope")


# The Sentry hold is a rule on two packages ([tool.history.sentry-hold]): the body read
# blocks only where gevent hands an upgrade its socket AND Werkzeug reads it as the body.
# The runs behind it: the layer cells of history(sentry-hold) at each end of each axis.
@pytest.mark.parametrize(
    ("gevent", "werkzeug", "held"),
    [
        ("26.9.0", "3.1.9", True),  # today's stack
        ("20.12.0", "2.3.0", True),
        ("20.9.0", "2.3.0", False),  # gevent's Input: an upgrade's body reads b""
        ("20.12.0", "2.2.3", False),  # Werkzeug's empty stream: the flag is False
        ("1.1.2", "0.11.11", False),  # the seed's stack
        (
            "21.12.0",
            "1.0.1",
            False,
        ),  # CPython 2.7's last Werkzeug, on a gevent that hands the socket
    ],
)
def test_sentry_holds_the_connection_only_where_both_axes_say_so(gevent, werkzeug, held):
    facts = StackFacts.from_versions(
        {"gevent-websocket": "0.10.1", "newrelic": None, "gevent": gevent, "Werkzeug": werkzeug}
    )
    cell = Cell("today", False, False, False, False, True, layer="sentry")
    expected = predict(cell, facts)
    assert expected.server_closed_tcp is (not held), expected.tcp_cause
    assert (expected.verdict == "-") is held
    patched = StackFacts.from_versions(
        {
            "gevent-websocket": "0.10.1+fixed",
            "newrelic": None,
            "gevent": gevent,
            "Werkzeug": werkzeug,
        }
    )
    assert predict(cell, patched).server_closed_tcp is True  # patch 0009: terminated input


# The 2020 stack on CPython 2.7 (tests/data/stacks/2020-py27.txt): vanilla 0.9.5 neither
# iterates nor closes, so HelloGoodbyer keeps the Flask app from ever being called, and
# newrelic 5.22 starts no transaction for a websocket upgrade.
LAZY_2020 = {"gevent-websocket": "0.9.5", "newrelic": "5.22.1.152", "gevent": "20.9.0"}


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("rum", [True, False])
def test_an_agent_that_skips_upgrades_has_nothing_to_finish_even_if_the_app_is_never_called(
    rum, streaming
):
    cell = Cell("2020-py27", True, False, rum, True, streaming)
    p = predict(cell, StackFacts.from_versions(LAZY_2020))
    assert (p.verdict, p.layer_finished) == ("-", None), p.layer_cause
    assert "no transaction" in p.layer_cause


@pytest.mark.parametrize(
    ("layer", "finished"),
    [
        # set up inside Flask, under HelloGoodbyer: the server's call never reaches it
        ("sentry", NOT_STARTED),
        ("elastic-apm", NOT_STARTED),
        ("opentelemetry-wsgi", NOT_STARTED),
        # wraps what the server is given: entered, its generator never run
        ("werkzeug-debugger", False),
    ],
)
def test_a_layer_the_lazy_layers_keep_from_being_entered_is_not_started(layer, finished):
    cell = Cell("2020-py27", False, False, False, True, False, layer=layer)
    p = predict(cell, StackFacts.from_versions({**LAZY_2020, "newrelic": None}))
    assert p.layer_finished == finished, p.layer_cause
    assert p.layer_defect  # the patched build makes it finish: the handler's defect


def test_a_layer_the_app_reaches_is_never_not_started():
    for hello_goodbyer in (True, False):
        cell = Cell("2020-py27", False, False, False, hello_goodbyer, False, layer="sentry")
        facts = StackFacts.from_versions({**LAZY_2020, "gevent-websocket": "0.10.1"})
        assert predict(cell, facts).layer_finished is True
