"""The atlas's axes, as data: the Pythons, the server's packages (each with the package
it is paired with), the websocket handlers and the layers, by the names the project
already gives them (pyproject.toml's [tool.handlers] and [tool.layers.*])."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.requirements import Requirement

from ..cells import AGENT_LAYER, DEFAULT_HANDLER, HANDLERS, LAYER_BY_DISTRIBUTION, layer_install
from ..userstack._registry import PYTHONS

# The CPython X.Y the atlas runs on: 2.7 and 3.6-3.13 (pyenv has each here).
ATLAS_PYTHONS = tuple(p for p in PYTHONS if p != "3.14")
PYTHON = "python"
# Packages with C extensions: a release without a CPython wheel for a Python does not
# install there (its sdist needs that era's compiler and headers), whatever its
# Requires-Python says.
BINARY = ("gevent", "greenlet")
HANDLER = "handler"


@dataclass(frozen=True)
class Axis:
    """One axis: its name in plan.json, the distribution whose releases it picks, the
    package each pick is paired with, and the extras the layer's docs install."""

    name: str
    package: str | None = None  # None: the Python, or the handlers (several packages)
    paired: str | None = None  # plan.json "with": Flask's Werkzeug, gevent's greenlet
    layer: str | None = None  # [tool.layers.<layer>], None for the server's axes
    extras: tuple[str, ...] = ()


def _layer_axis(distribution: str, layer: str) -> Axis:
    install = layer_install(layer)
    extras = tuple(sorted(Requirement(install[0]).extras)) if install else ()
    return Axis(distribution, distribution, layer=layer, extras=extras)


AXES: tuple[Axis, ...] = (
    Axis(PYTHON),
    Axis("flask", "Flask", paired="Werkzeug"),
    Axis("gevent", "gevent", paired="greenlet"),
    # gevent-websocket's releases by the rule (vanilla and patched are both builds of
    # every run, one value), the other handlers at their [tool.handlers] pins
    Axis(HANDLER, DEFAULT_HANDLER),
    _layer_axis("newrelic", AGENT_LAYER or "newrelic"),  # the agent arm (agent on/off)
    *(_layer_axis(d, layer) for d, layer in sorted(LAYER_BY_DISTRIBUTION.items())),
)
BY_NAME = {a.name: a for a in AXES}


def fixed_handlers() -> dict[str, dict[str, str]]:
    """{distribution: {"version", "sha256"}} of the handlers pinned in [tool.handlers]."""
    return {
        name: {"version": h["version"], "sha256": h["sha256"]}
        for name, h in sorted(HANDLERS.items())
    }


def layer_axes() -> list[Axis]:
    """The axes whose package is a layer beside newrelic's agent arm (8 cells each)."""
    return [a for a in AXES if a.layer is not None and a.layer != AGENT_LAYER]


LAYER_AXES = frozenset(a.name for a in AXES if a.layer is not None)  # newrelic's among them


def can_meet(x: str, y: str) -> bool:
    """Whether values of these two axes can change one cell together: not two layers'
    (each run serves one layer, and the agent arm no other)."""
    return not {x, y} <= LAYER_AXES
