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
from typing import Any

from packaging.version import Version

from .cells import DEFAULT_HANDLER, HANDLERS, HISTORY, PATCHED_LABEL, Cell


def threshold(name: str) -> Version:
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


# What [tool.handlers.<name>.model] must say of a handler (pyproject.toml says what each means).
HANDLER_PROPERTIES = ("iterates_result", "keeps_view_result", "closes_result",
                      "sends_close_frame", "closes_tcp")


def handler_properties(name: str) -> dict[str, bool]:
    """[tool.handlers.<name>.model]: the upstream facts of a handler other than
    gevent-websocket (whose facts follow from its version)."""
    model = HANDLERS.get(name, {}).get("model")
    if model is None or any(not isinstance(model.get(p), bool) for p in HANDLER_PROPERTIES):
        raise KeyError(f"handler {name!r}: pyproject.toml has no [tool.handlers.{name}.model] "
                       f"with the booleans {', '.join(HANDLER_PROPERTIES)}; add them")
    return {p: model[p] for p in HANDLER_PROPERTIES}


@dataclass(frozen=True)
class StackFacts:
    handler_iterates: bool
    handler_closes: bool
    agent_rum_lazy_on_websockets: bool  # only meaningful with the agent on, RUM on
    # Both true of every gevent-websocket: the view's result is what it iterates, and
    # it ends a websocket with a close frame (vanilla's is empty, which RFC 6455 allows).
    keeps_view_result: bool = True
    sends_close_frame: bool = True

    @classmethod
    def from_versions(cls, versions: Mapping[str, str | None],
                      handler: str = DEFAULT_HANDLER) -> StackFacts:
        agent = versions.get("newrelic")
        lazy_rum = False
        if agent is not None:
            nr = Version(agent)
            lazy_rum = nr < AGENT_SKIPS_WEBSOCKETS
        if handler != DEFAULT_HANDLER:
            props = handler_properties(handler)
            return cls(handler_iterates=props["iterates_result"],
                       handler_closes=props["closes_result"],
                       agent_rum_lazy_on_websockets=lazy_rum,
                       keeps_view_result=props["keeps_view_result"],
                       sends_close_frame=props["sends_close_frame"])
        gws = Version(versions["gevent-websocket"] or "")  # absent: InvalidVersion
        fixed = gws.local == PATCHED_LABEL
        # Compare releases as Versions ("0.10" == "0.10.0"), not as .release tuples:
        # (0, 10) < (0, 10, 0) made 0.10 a non-iterating release (history found it).
        return cls(handler_iterates=fixed or Version(gws.base_version) >= HANDLER_ITERATES,
                   handler_closes=fixed, agent_rum_lazy_on_websockets=lazy_rum)


@dataclass(frozen=True)
class Prediction:
    view: bool
    iterator: bool | None  # None: the criterion does not apply to this cell
    middleware: bool | None
    verdict: str
    iterable_closed: bool
    valid_close_frame: bool
    lazy_layers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(cell: Cell, facts: StackFacts) -> Prediction:
    lazy = []
    if cell.hello_goodbyer:
        lazy.append("HelloGoodbyer")
    if cell.agent and cell.rum and facts.agent_rum_lazy_on_websockets:
        lazy.append("agent RUM middleware")
    runs_lazy_code = facts.handler_iterates
    view = runs_lazy_code or not lazy
    # The streaming view's iterator is its return value: a handler that drops it
    # (flask-sock) never runs it, whatever it iterates instead.
    iterator = runs_lazy_code and facts.keeps_view_result if cell.streaming else None
    middleware = runs_lazy_code if cell.hello_goodbyer else None
    ok = view and iterator is not False and middleware is not False
    return Prediction(view=view, iterator=iterator, middleware=middleware,
                      verdict="+" if ok else "-", iterable_closed=facts.handler_closes,
                      valid_close_frame=facts.sends_close_frame, lazy_layers=tuple(lazy))
