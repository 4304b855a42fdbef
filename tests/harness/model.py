"""The expectation model: a hypothesis about why a cell passes or fails.

It predicts from properties of the stack that the server reports (versions
of gevent-websocket and the agent), never from a per-cell lookup.  Each
property is an upstream fact: its release thresholds live in pyproject.toml's
[tool.history.*] and `nox -s "history(<package>)"` proves them; the matrix then
checks every prediction against what the server and clients did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from packaging.version import Version

from .builds import PATCHES
from .cells import DEFAULT_HANDLER, HANDLERS, HISTORY, LAYERS, NO_LAYER, PATCHED_LABEL, Cell
from .defects import GWS_READER_ABORT, LAYER_NOT_CLOSED, LAYER_NOT_ITERATED
from .records import NOT_STARTED, Finished


def threshold(name: str) -> Version:
    """A release threshold of the model, from pyproject.toml's [tool.history.<package>].

    The one source of truth: `nox -s "history(<package>)"` fails if the flip it
    finds by bisection is not this release.
    """
    for entry in HISTORY.values():
        # a rule on two packages keeps each axis's thresholds under [...axes.<package>]
        for owner in (entry, *entry.get("axes", {}).values()):
            if name in owner.get("thresholds", {}):
                return Version(owner["thresholds"][name])
    raise KeyError(f"no threshold {name!r} in pyproject.toml [tool.history.*.thresholds]")


# newrelic's first release that leaves websocket upgrade requests alone (its RUM
# middleware no longer wraps them).  Whether that middleware is lazy or eager
# (2.82.0.62 made it eager) is then unobservable on a websocket: not in the model.
AGENT_SKIPS_WEBSOCKETS = threshold("agent_skips_websockets")
# gevent-websocket's first release that list()s the application's result.
HANDLER_ITERATES = threshold("handler_iterates")
# Reading the request body of a websocket upgrade blocks on the websocket's own frames
# only where both of these hold ([tool.history.sentry-hold], bisected on both axes):
# gevent's first release whose pywsgi hands an upgrade request its raw socket file as
# wsgi.input with wsgi.input_terminated = False (before it: gevent's Input, which reads
# b"" without a Content-Length; patches/gevent-websocket/*/0009 replace either), and
# Werkzeug's first release whose get_input_stream trusts the *presence* of
# wsgi.input_terminated (before it: its truth, so False gave an empty stream).
GEVENT_UPGRADE_INPUT_IS_SOCKET = threshold("upgrade_input_is_socket")
WERKZEUG_READS_UNTERMINATED_INPUT = threshold("reads_unterminated_input")


# The seed's views that return a Response(..., direct_passthrough=True) (app/web.py):
# Werkzeug's Response.get_app_iter then returns the bare iterable, not
# ClosingIterator(iterable, self.close), so Response.close (call_on_close) never runs.
PASSTHROUGH_ROUTES = ("/streaming",)


@cache  # the patches do not change while a process reads them: the page asks thousands of times
def patch_series_terminates_input(release: str) -> bool:
    """Whether the patch series of ``release`` gives the application a terminated
    wsgi.input after the upgrade (a line it adds sets ``wsgi.input_terminated``)."""
    series = sorted((PATCHES / release).glob("*.patch"))
    return any(
        line.startswith("+") and "wsgi.input_terminated" in line
        for patch in series
        for line in patch.read_text().splitlines()
    )


# What [tool.handlers.<name>.model] must say of a handler (pyproject.toml says what each means).
HANDLER_PROPERTIES = (
    "iterates_result",
    "keeps_view_result",
    "closes_result",
    "sends_close_frame",
    "closes_tcp",
)


def handler_properties(name: str) -> dict[str, bool]:
    """[tool.handlers.<name>.model]: the upstream facts of a handler other than
    gevent-websocket (whose facts follow from its version)."""
    model = HANDLERS.get(name, {}).get("model")
    if model is None or any(not isinstance(model.get(p), bool) for p in HANDLER_PROPERTIES):
        raise KeyError(
            f"handler {name!r}: pyproject.toml has no [tool.handlers.{name}.model] "
            f"with the booleans {', '.join(HANDLER_PROPERTIES)}; add them"
        )
    return {
        **{p: model[p] for p in HANDLER_PROPERTIES},
        "tcp_close_races": bool(model.get("tcp_close_races")),
        "closes_response": bool(model.get("closes_response", True)),
        "reader_outlives_socket": bool(model.get("reader_outlives_socket")),
    }


@dataclass(frozen=True)
class StackFacts:
    handler_iterates: bool
    handler_closes: bool
    agent_rum_lazy_on_websockets: bool  # only meaningful with the agent on, RUM on
    # Both true of every gevent-websocket: the view's result is what it iterates, and
    # it ends a websocket with a close frame (vanilla's is empty, which RFC 6455 allows).
    keeps_view_result: bool = True
    sends_close_frame: bool = True
    # after the websocket ends ([tool.handlers.*.model]); None: it races (not predicted)
    closes_tcp: bool | None = True
    # the handler and its release in cause sentences ("gevent-websocket 0.10.1+fixed")
    handler_label: str = DEFAULT_HANDLER
    # the handler gives the application an empty, terminated wsgi.input after the upgrade
    # (otherwise wsgi.input is the websocket's socket, not terminated)
    handler_terminates_input: bool = False
    # the application's wsgi.input after the upgrade is the websocket's socket: gevent
    # leaves it unwrapped and the handler does not replace it
    upgrade_input_is_socket: bool = False
    # the application's request stream is that wsgi.input itself: Werkzeug trusts the
    # presence of wsgi.input_terminated, not its value (so reading it blocks)
    stream_is_raw_input: bool = False
    agent_monitors_websockets: bool = False  # the agent starts a transaction for one
    # the Response Flask returns is called as Werkzeug's (ClosingIterator: its close() runs);
    # flask-sock returns one whose __call__ gives the server a bare [] instead
    closes_response: bool = True
    # a reader greenlet outlives the socket gevent.pywsgi closes (gevent-ws)
    reader_outlives_socket: bool = False

    @classmethod
    def from_versions(
        cls, versions: Mapping[str, str | None], handler: str = DEFAULT_HANDLER
    ) -> StackFacts:
        agent = versions.get("newrelic")
        lazy_rum = False
        if agent is not None:
            nr = Version(agent)
            lazy_rum = nr < AGENT_SKIPS_WEBSOCKETS
        if handler != DEFAULT_HANDLER:
            props = handler_properties(handler)
            return cls(
                handler_iterates=props["iterates_result"],
                handler_closes=props["closes_result"],
                agent_rum_lazy_on_websockets=lazy_rum,
                keeps_view_result=props["keeps_view_result"],
                sends_close_frame=props["sends_close_frame"],
                closes_tcp=None if props["tcp_close_races"] else props["closes_tcp"],
                handler_label=handler,
                agent_monitors_websockets=lazy_rum,
                closes_response=props["closes_response"],
                reader_outlives_socket=props["reader_outlives_socket"],
            )
        gws = Version(versions["gevent-websocket"] or "")  # absent: InvalidVersion
        fixed = gws.local == PATCHED_LABEL
        terminates = fixed and patch_series_terminates_input(gws.base_version)
        gevent = versions.get("gevent")
        werkzeug = versions.get("Werkzeug")
        # Compare releases as Versions ("0.10" == "0.10.0"), not as .release tuples:
        # (0, 10) < (0, 10, 0) made 0.10 a non-iterating release (history found it).
        return cls(
            handler_iterates=fixed or Version(gws.base_version) >= HANDLER_ITERATES,
            handler_closes=fixed,
            agent_rum_lazy_on_websockets=lazy_rum,
            handler_terminates_input=terminates,
            upgrade_input_is_socket=bool(gevent)
            and not terminates
            and Version(str(gevent)) >= GEVENT_UPGRADE_INPUT_IS_SOCKET,
            stream_is_raw_input=bool(werkzeug)
            and Version(str(werkzeug)) >= WERKZEUG_READS_UNTERMINATED_INPUT,
            agent_monitors_websockets=lazy_rum,
            handler_label=f"{DEFAULT_HANDLER} {gws}",
        )


@dataclass(frozen=True)
class Prediction:
    view: bool
    iterator: bool | None  # None: the criterion does not apply to this cell
    middleware: bool | None
    verdict: str
    iterable_closed: bool
    valid_close_frame: bool
    lazy_layers: tuple[str, ...]
    layer_finished: Finished = None
    server_closed_tcp: bool | None = True  # None: not predicted (a race)
    # why the layer does (not) finish, and why the server keeps TCP, in words
    layer_cause: str = ""
    tcp_cause: str = ""
    # the named defect (tests/harness/defects.py) of the handler that the layer's not
    # finishing shows, where a handler patch is what makes it finish
    layer_defect: str = ""
    # the named defect that may kill the server after a websocket's request: a race the
    # model allows, not one it predicts (records.CellRecord.died_as_allowed)
    may_die: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FINISHES = {
    "return": "when the application returns",
    "exhaustion": "when its iterable is exhausted (or a started one closed)",
    "close": "in close()",
}


def layer_properties(name: str) -> dict[str, Any]:
    """[tool.layers.<name>] of pyproject.toml, the properties the model predicts from."""
    props: dict[str, Any] | None = LAYERS.get(name)
    if props is None or props.get("finishes") not in FINISHES:
        raise KeyError(
            f"[tool.layers.{name}] needs finishes = one of {sorted(FINISHES)} in pyproject.toml"
        )
    return props


def handler_words(facts: StackFacts) -> str:
    what = (
        "iterates and closes"
        if facts.handler_closes
        else "iterates (list()) but never calls close() on"
        if facts.handler_iterates
        else "neither iterates nor closes"
    )
    return f"{facts.handler_label} {what} the application's result"


def predict_layer(
    cell: Cell,
    facts: StackFacts,
    app_called: bool,
) -> tuple[Finished, str, bool]:
    """(layer_finished, cause, whether the handler is the cause of an unfinished layer)
    of the cell's tracked layer."""
    name = cell.tracked_layer
    if name is None:
        return None, "", False
    if cell.layer == NO_LAYER and not facts.agent_monitors_websockets:
        return (
            None,
            (f"{name} starts no transaction for a websocket upgrade: nothing to finish"),
            False,
        )
    props = layer_properties(name)
    handler = handler_words(facts)
    outside = props.get("position") == "server"  # wraps what the server is given
    if not app_called and not outside:
        return (
            NOT_STARTED,
            (
                f"{name} runs inside the lazy layers, and {handler}: the application is "
                "never called, so the layer is never entered (not started)"
            ),
            True,
        )
    finishes = props["finishes"]
    says = f"{name} ends its request work {FINISHES[finishes]}"
    if finishes == "return":
        return (
            app_called,
            f"{says}; " + (handler if not app_called else "it is called"),
            not app_called,
        )
    if finishes == "exhaustion":
        return facts.handler_iterates, f"{says}; {handler}", not facts.handler_iterates
    # "close": the server's close(), or HelloGoodbyer's own (its generator's finally
    # closes the iterable it wraps, when the handler exhausts it)
    closed_by_hg = cell.hello_goodbyer and facts.handler_iterates and not outside
    if props.get("close_hook") == "response" and cell.route in PASSTHROUGH_ROUTES:
        return (
            False,
            (
                f"{says} through Werkzeug's Response.call_on_close, and {cell.route} "
                "returns Response(..., direct_passthrough=True): Werkzeug's "
                "Response.get_app_iter then returns the bare generator, not "
                "ClosingIterator(..., Response.close), so the server's close() never "
                "reaches the Response (on every build: no handler patch can change "
                "this)"
            ),
            False,
        )
    if props.get("close_hook") == "response" and not facts.closes_response:
        return (
            False,
            (
                f"{says} through Werkzeug's Response.call_on_close, and "
                f"{facts.handler_label} gives Flask a Response whose __call__ returns a "
                "bare [] ([tool.handlers.*.model] closes_response = false): the "
                "server's close() never reaches a Response"
            ),
            False,
        )
    if facts.handler_closes:
        return True, f"{says}; {handler}", False
    if closed_by_hg:
        return (
            True,
            (
                f"{says}; {handler}, but HelloGoodbyer's generator closes the iterable "
                "it wraps when exhausted"
            ),
            False,
        )
    return False, f"{says}; {handler}", True


def predict(cell: Cell, facts: StackFacts) -> Prediction:
    lazy = []
    if cell.hello_goodbyer:
        lazy.append("HelloGoodbyer")
    if cell.agent and cell.rum and facts.agent_rum_lazy_on_websockets:
        lazy.append("agent RUM middleware")
    props = layer_properties(cell.layer) if cell.layer != NO_LAYER else {}
    if props.get("defers_call"):
        lazy.append(cell.layer)
    runs_lazy_code = facts.handler_iterates
    view = runs_lazy_code or not lazy
    # The streaming view's iterator is its return value: a handler that drops it
    # (flask-sock) never runs it, whatever it iterates instead.
    iterator = runs_lazy_code and facts.keeps_view_result if cell.streaming else None
    middleware = runs_lazy_code if cell.hello_goodbyer else None
    closes_tcp, tcp_cause, valid_close = facts.closes_tcp, "", facts.sends_close_frame
    if closes_tcp is None:
        tcp_cause = (
            f"{facts.handler_label}: whether the server closes TCP after the closing "
            "handshake races ([tool.handlers.*.model] tcp_close_races): not predicted"
        )
    elif not closes_tcp:
        tcp_cause = (
            f"{facts.handler_label} does not close the TCP connection after the "
            "websocket ends ([tool.handlers.*.model] closes_tcp = false)"
        )
    elif not facts.sends_close_frame:
        closes_tcp = False
        tcp_cause = (
            f"{facts.handler_label} sends no close frame: there is no closing "
            "handshake after which the server closes TCP (RFC 6455 7.1.1)"
        )
    if (
        props.get("reads_input")
        and view
        and facts.upgrade_input_is_socket
        and facts.stream_is_raw_input
    ):
        # the layer reads the request body when the application returns: on every route
        # the websocket's own frames (the client's close), until the client gives up; on
        # the streaming route that is before the iterator's exchange, which is lost
        closes_tcp = valid_close = False  # the handler's close frame comes after the read
        if cell.streaming:
            iterator = False
        tcp_cause = (
            f"{cell.layer} reads the request body when the application returns, and "
            f"{facts.handler_label} on gevent >= {GEVENT_UPGRADE_INPUT_IS_SOCKET} "
            "passes the websocket's socket as wsgi.input (wsgi.input_terminated "
            f"False), which Werkzeug >= {WERKZEUG_READS_UNTERMINATED_INPUT} reads "
            "as the body because the flag is present: the read takes the "
            "client's frames (its close too), so no close frame is sent and the "
            "connection is held"
        )
    ok = view and iterator is not False and middleware is not False
    finished, layer_cause, by_handler = predict_layer(cell, facts, view)
    # an unfinished layer is the handler's named defect where gevent-websocket's patched
    # build makes it finish (the defect's sentence: tests/harness/defects.py)
    defect = (
        (LAYER_NOT_CLOSED if facts.handler_iterates else LAYER_NOT_ITERATED)
        if (
            by_handler
            and cell.layer != NO_LAYER
            and facts.handler_label.startswith(DEFAULT_HANDLER + " ")
        )
        else ""
    )
    return Prediction(
        view=view,
        iterator=iterator,
        middleware=middleware,
        verdict="+" if ok else "-",
        iterable_closed=facts.handler_closes,
        valid_close_frame=valid_close,
        lazy_layers=tuple(lazy),
        layer_finished=finished,
        server_closed_tcp=closes_tcp,
        layer_cause=layer_cause,
        tcp_cause=tcp_cause,
        layer_defect=defect,
        may_die=GWS_READER_ABORT
        if facts.reader_outlives_socket and props.get("keeps_request")
        else "",
    )
