"""The cell runner's reading of the server's events (tests/harness/cellrun.py): a layer
end counts only before its request's ``request_done``, and a client that waited out the
close-of-TCP safety net is told apart from one the server's notice ended."""

from __future__ import annotations

from tests.harness.cellrun import CLOSE_BOUND, close_bound_hit, with_their_requests
from tests.harness.clients import Transcript


def test_a_layer_end_after_its_requests_done_does_not_count():
    events = [{"event": "request", "rid": 2},
              {"event": "layer_finished", "layer": "sentry", "rid": 3},
              {"event": "request_done", "rid": 2, "keep_alive": False},
              {"event": "layer_finished", "layer": "newrelic", "rid": 2, "fallback": True},
              {"event": "layer_skipped", "layer": "newrelic", "rid": 2},
              {"event": "iterable_closed", "rid": 2, "count": 1},
              {"event": "request_done", "rid": 3, "keep_alive": False}]
    kept = with_their_requests(events)
    assert kept == [events[0], events[1], events[2], events[5], events[6]]


def tcp_closed(**fields):
    return Transcript("python", "ws://x", 0, [{"event": "tcp_closed", **fields}])


def test_only_a_wait_ended_by_its_own_bound_is_the_safety_nets():
    bound_hit = tcp_closed(handshake=True, by="client", bound=CLOSE_BOUND,
                           error="the server kept the TCP connection open 10.0 s (bound) "
                                 "after the closing handshake")
    told = tcp_closed(handshake=True, by="client", bound=CLOSE_BOUND,
                      notice="server_keeps_tcp_open",
                      error="the server reported it kept the TCP connection open for "
                            "another request after the closing handshake")
    by_server = tcp_closed(handshake=True, by="server", how="fin", after_handshake=0.01,
                           bound=CLOSE_BOUND)
    silent_server = tcp_closed(handshake=False, by="client", bound=3.0,
                               error="the client gave up waiting for the server")
    assert close_bound_hit(bound_hit)
    assert not any(close_bound_hit(t) for t in (told, by_server, silent_server))
