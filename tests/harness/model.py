"""The expectation model: a hypothesis about why a cell passes or fails.

It predicts from properties of the stack that the server reports (versions
of gevent-websocket and the agent), never from a per-cell lookup.  Each
property is the upstream fact that DESIGN.md establishes; the matrix then
checks every prediction against what the server and clients did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from packaging.version import Version

from .builds import PATCHES
from .cells import HISTORY, LAYERS, NO_LAYER, PATCHED_LABEL


def threshold(name):
    """A release threshold of the model, from pyproject.toml's [tool.history.<package>].

    The one source of truth: `nox -s "history(<package>)"` fails if the flip it
    finds by bisection is not this release.
    """
    for entry in HISTORY.values():
        if name in entry.get("thresholds", {}):
            return Version(entry["thresholds"][name])
    raise KeyError(f"no threshold {name!r} in pyproject.toml [tool.history.*.thresholds]")


# newrelic's first release that leaves websocket upgrade requests alone (its RUM
# middleware no longer wraps them).  Whether that middleware is lazy or eager
# (2.82.0.62 made it eager) is then unobservable on a websocket: not in the model.
AGENT_SKIPS_WEBSOCKETS = threshold("agent_skips_websockets")
# gevent-websocket's first release that list()s the application's result.
HANDLER_ITERATES = threshold("handler_iterates")


# The seed's views that return a Response(..., direct_passthrough=True) (app/web.py):
# Werkzeug's Response.get_app_iter then returns the bare iterable, not
# ClosingIterator(iterable, self.close), so Response.close (call_on_close) never runs.
PASSTHROUGH_ROUTES = ("/streaming",)


def patch_series_terminates_input(release):
    """Whether the patch series of ``release`` gives the application a terminated
    wsgi.input after the upgrade (a line it adds sets ``wsgi.input_terminated``)."""
    series = sorted((PATCHES / release).glob("*.patch"))
    return any(line.startswith("+") and "wsgi.input_terminated" in line
               for patch in series for line in patch.read_text().splitlines())


@dataclass(frozen=True)
class StackFacts:
    handler_iterates: bool
    handler_closes: bool
    agent_rum_lazy_on_websockets: bool  # only meaningful with the agent on, RUM on
    # the handler gives the application an empty, terminated wsgi.input after the upgrade
    # (otherwise wsgi.input is the websocket's socket, not terminated)
    handler_terminates_input: bool = False
    agent_monitors_websockets: bool = False  # the agent starts a transaction for one

    @classmethod
    def from_versions(cls, versions):
        gws = Version(versions["gevent-websocket"])
        fixed = gws.local == PATCHED_LABEL
        agent = versions.get("newrelic")
        lazy_rum = False
        if agent is not None:
            nr = Version(agent)
            lazy_rum = nr < AGENT_SKIPS_WEBSOCKETS
        # Compare releases as Versions ("0.10" == "0.10.0"), not as .release tuples:
        # (0, 10) < (0, 10, 0) made 0.10 a non-iterating release (history found it).
        return cls(handler_iterates=fixed or Version(gws.base_version) >= HANDLER_ITERATES,
                   handler_closes=fixed, agent_rum_lazy_on_websockets=lazy_rum,
                   handler_terminates_input=fixed and patch_series_terminates_input(
                       gws.base_version),
                   agent_monitors_websockets=lazy_rum)


@dataclass(frozen=True)
class Prediction:
    view: bool
    iterator: bool | None  # None: the criterion does not apply to this cell
    middleware: bool | None
    verdict: str
    iterable_closed: bool
    valid_close_frame: bool
    lazy_layers: tuple
    layer_finished: bool | None = None
    server_closed_tcp: bool = True
    # why the layer does (not) finish, and why the server keeps TCP, in words
    layer_cause: str = ""
    tcp_cause: str = ""

    def as_dict(self):
        return asdict(self)


FINISHES = {"return": "when the application returns", "exhaustion":
            "when its iterable is exhausted (or a started one closed)", "close": "in close()"}


def layer_properties(name):
    """[tool.layers.<name>] of pyproject.toml, the properties the model predicts from."""
    props = LAYERS.get(name)
    if props is None or props.get("finishes") not in FINISHES:
        raise KeyError(f"[tool.layers.{name}] needs finishes = one of {sorted(FINISHES)} "
                       "in pyproject.toml")
    return props


def handler_words(facts, release):
    what = ("iterates and closes" if facts.handler_closes else
            "iterates (list()) but never calls close() on" if facts.handler_iterates else
            "neither iterates nor closes")
    return f"gevent-websocket {release} {what} the application's result"


def predict_layer(cell, facts, app_called, release):
    """(layer_finished, cause) of the cell's tracked layer."""
    name = cell.tracked_layer
    if name is None:
        return None, ""
    if cell.layer == NO_LAYER and not facts.agent_monitors_websockets:
        return None, f"{name} starts no transaction for a websocket upgrade: nothing to finish"
    props = layer_properties(name)
    handler = handler_words(facts, release)
    outside = props.get("position") == "server"  # wraps what the server is given
    if not app_called and not outside:
        return False, (f"{name} runs inside the lazy layers, and {handler}: the application "
                       "is never called")
    finishes = props["finishes"]
    says = f"{name} ends its request work {FINISHES[finishes]}"
    if finishes == "return":
        return app_called, f"{says}; " + (handler if not app_called else "it is called")
    if finishes == "exhaustion":
        return facts.handler_iterates, f"{says}; {handler}"
    # "close": the server's close(), or HelloGoodbyer's own (its generator's finally
    # closes the iterable it wraps, when the handler exhausts it)
    closed_by_hg = cell.hello_goodbyer and facts.handler_iterates and not outside
    if props.get("close_hook") == "response" and cell.route in PASSTHROUGH_ROUTES:
        return False, (f"{says} through Werkzeug's Response.call_on_close, and {cell.route} "
                       "returns Response(..., direct_passthrough=True): Werkzeug hands the "
                       "server the bare generator, so no close() reaches the Response "
                       "(no handler patch can change this)")
    if facts.handler_closes:
        return True, f"{says}; {handler}"
    if closed_by_hg:
        return True, (f"{says}; {handler}, but HelloGoodbyer's generator closes the iterable "
                      "it wraps when exhausted")
    return False, f"{says}; {handler}"


def predict(cell, facts, release=None):
    """``release``: gevent-websocket's version, for the cause sentences only."""
    release = release or ("patched" if facts.handler_closes else "vanilla")
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
    iterator = runs_lazy_code if cell.streaming else None
    middleware = runs_lazy_code if cell.hello_goodbyer else None
    closes_tcp, tcp_cause = True, ""
    if props.get("reads_input") and cell.streaming and view and not facts.handler_terminates_input:
        # the layer reads the request body at the end of the request: on a websocket
        # that is not terminated, the websocket's own frames, until the client gives up
        iterator, closes_tcp = False, False
        tcp_cause = (f"{cell.layer} reads the request body when the request ends, and "
                     f"gevent-websocket {release} passes the websocket's socket as wsgi.input "
                     "(wsgi.input_terminated=False): the read takes the client's frames and "
                     "holds the connection")
    ok = view and iterator is not False and middleware is not False
    finished, layer_cause = predict_layer(cell, facts, view, release)
    return Prediction(view=view, iterator=iterator, middleware=middleware,
                      verdict="+" if ok else "-", iterable_closed=facts.handler_closes,
                      valid_close_frame=True, lazy_layers=tuple(lazy),
                      layer_finished=finished, server_closed_tcp=closes_tcp,
                      layer_cause=layer_cause, tcp_cause=tcp_cause)
