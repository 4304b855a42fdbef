"""``layer_finished`` from the server's events (tests/harness/criteria.py): a layer that never
finished a request must have been entered for it; otherwise it was never started."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.criteria import layer_finished
from tests.harness.records import NOT_STARTED, Observation, all_finished, unfinished

RID = 7


def event(name: str, layer: str, rid: int = RID, **fields: Any) -> dict[str, Any]:
    return {"event": name, "layer": layer, "rid": rid, **fields}


@pytest.mark.parametrize(
    ("layer", "events", "finished"),
    [
        # the agent's wrapper was entered and started no transaction (app/agent.py decides
        # it outside the app): nothing to finish, whether or not the app was called
        (
            "newrelic",
            [event("layer_entered", "newrelic"), event("layer_skipped", "newrelic")],
            None,
        ),
        ("sentry", [event("layer_entered", "sentry"), event("layer_finished", "sentry")], True),
        ("sentry", [event("layer_entered", "sentry")], False),
        # entered, ended only by the garbage collector: not with the request
        (
            "newrelic",
            [
                event("layer_entered", "newrelic"),
                event("layer_finished", "newrelic", fallback=True),
            ],
            False,
        ),
        # no event from the layer for this request is no evidence that it never finished
        ("newrelic", [], NOT_STARTED),
        # the old reading of this cell: the agent's skip came from inside the app, which
        # the lazy layers kept from being called, so nothing at all was logged
        ("newrelic", [{"event": "request", "rid": RID}], NOT_STARTED),
        # another request's entry, or another layer's, says nothing about this one
        (
            "sentry",
            [event("layer_entered", "sentry", RID + 1), event("layer_entered", "newrelic")],
            NOT_STARTED,
        ),
    ],
)
def test_a_negative_needs_the_layer_entered(layer, events, finished):
    assert layer_finished(layer, RID, events)[0] == finished


def test_no_layer_has_nothing_to_finish():
    assert layer_finished(None, RID, [event("layer_entered", "sentry")])[0] is None


@pytest.mark.parametrize(
    ("values", "outcome"),
    [
        ([True, True], True),
        ([True, False], False),
        ([NOT_STARTED, NOT_STARTED], NOT_STARTED),
        ([NOT_STARTED, False], False),
        ([None, None], None),
    ],
)
def test_a_cells_layer_outcome_over_its_clients(values, outcome):
    assert all_finished(values) == outcome


def test_not_started_is_unfinished_and_read_back_as_written():
    assert unfinished(NOT_STARTED) and unfinished(False)
    assert not unfinished(True) and not unfinished(None)
    from tests.harness.records import from_dict, to_dict

    obs = Observation("python", 1, False, None, False, "-", False, True, layer_finished=NOT_STARTED)
    assert from_dict(Observation, to_dict(obs)).layer_finished == NOT_STARTED
