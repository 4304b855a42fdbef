"""The cell runner's reading of the server's events (tests/harness/cellrun.py): a layer
end counts only before its request's ``request_done``."""

from __future__ import annotations

from tests.harness.cellrun import with_their_requests


def test_a_layer_end_after_its_requests_done_does_not_count():
    events = [
        {"event": "request", "rid": 2},
        {"event": "layer_finished", "layer": "sentry", "rid": 3},
        {"event": "request_done", "rid": 2, "keep_alive": False},
        {"event": "layer_finished", "layer": "newrelic", "rid": 2, "fallback": True},
        {"event": "layer_skipped", "layer": "newrelic", "rid": 2},
        {"event": "iterable_closed", "rid": 2, "count": 1},
        {"event": "request_done", "rid": 3, "keep_alive": False},
    ]
    kept = with_their_requests(events)
    assert kept == [events[0], events[1], events[2], events[5], events[6]]
