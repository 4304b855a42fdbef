"""The expectation model: a hypothesis about why a cell passes or fails.

It predicts from properties of the stack that the server reports (versions
of gevent-websocket and the agent), never from a per-cell lookup.  Each
property is the upstream fact that DESIGN.md establishes; the matrix then
checks every prediction against what the server and clients did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from packaging.version import Version

from .cells import HISTORY, PATCHED_LABEL


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


@dataclass(frozen=True)
class StackFacts:
    handler_iterates: bool
    handler_closes: bool
    agent_rum_lazy_on_websockets: bool  # only meaningful with the agent on, RUM on

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
                   handler_closes=fixed, agent_rum_lazy_on_websockets=lazy_rum)


@dataclass(frozen=True)
class Prediction:
    view: bool
    iterator: bool | None  # None: the criterion does not apply to this cell
    middleware: bool | None
    verdict: str
    iterable_closed: bool
    valid_close_frame: bool
    lazy_layers: tuple

    def as_dict(self):
        return asdict(self)


def predict(cell, facts):
    lazy = []
    if cell.hello_goodbyer:
        lazy.append("HelloGoodbyer")
    if cell.agent and cell.rum and facts.agent_rum_lazy_on_websockets:
        lazy.append("agent RUM middleware")
    runs_lazy_code = facts.handler_iterates
    view = runs_lazy_code or not lazy
    iterator = runs_lazy_code if cell.streaming else None
    middleware = runs_lazy_code if cell.hello_goodbyer else None
    ok = view and iterator is not False and middleware is not False
    return Prediction(view=view, iterator=iterator, middleware=middleware,
                      verdict="+" if ok else "-", iterable_closed=facts.handler_closes,
                      valid_close_frame=True, lazy_layers=tuple(lazy))
