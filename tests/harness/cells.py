"""A cell of the matrix, the seed's published table, and the stacks' sessions."""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import MISSING, Field, asdict, astuple, dataclass, fields, replace
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .paths import DATA, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli on older interpreters
    import tomli as tomllib


def resolve_stacks(declared: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """[tool.stacks] with each `base = "<stack>"` resolved: the one place that does it.

    A stack inherits its base's settings; its own lists of pins (server, agent)
    are added to the base's, any other key of its own replaces the base's.
    """
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        own = declared[name]
        base = own.get("base")
        if base is None:
            resolved[name] = dict(own)
            return resolved[name]
        if base not in declared or base in seen or base == name:
            raise ValueError(
                f"[tool.stacks.{name}] base = {base!r}: expected one of the other "
                f"stacks {sorted(set(declared) - {name})}, without a cycle; fix "
                "pyproject.toml"
            )
        stack = dict(resolve(base, (*seen, name)))
        for key, value in own.items():
            inherited = stack.get(key)
            stack[key] = (
                [*inherited, *value]
                if isinstance(value, list) and isinstance(inherited, list)
                else value
            )
        resolved[name] = stack
        return stack

    for name in declared:
        resolve(name)
    return resolved


TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
STACKS = resolve_stacks(TOOL["stacks"])
HISTORY = TOOL.get("history", {})  # [tool.history.<package>]: tests/harness/history.py
# The handlers a user can migrate to: {name: pins, python27, model, ...}.
HANDLERS: dict[str, dict[str, Any]] = TOOL.get("handlers", {})
DEFAULT_HANDLER = "gevent-websocket"  # Cell.handler's default, the reference rows
# What history proved, one committed file per package (records.HistoryPackage): the
# report cites it, `nox -s "history(<package>)"` re-proves it (a lock file).
HISTORY_DATA = DATA / "history"
# Request layers: [tool.layers.<name>], pins per stack and properties.
LAYERS: dict[str, dict[str, Any]] = TOOL.get("layers", {})
NO_LAYER = "none"  # Cell.layer of a cell without one (the layer-off control)
# The layer that is the cells' agent axis (no session of its own).
AGENT_LAYER = next((n for n, p in LAYERS.items() if p.get("axis") == "agent"), None)
SESSION_LAYERS = tuple(n for n, p in LAYERS.items() if p.get("axis") is None)
# nox session name per stack
SESSION_KIND = {"today": "matrix", "seed": "seed", "deploy": "deploy"}
# How a stack's servers start (tests/harness/server.py): "app" is `python -m app`.
LAUNCHER = {name: stack.get("launcher", "app") for name, stack in STACKS.items()}
# A plain `nox` runs the stacks that `python -m app` serves; the others (deploy:
# gunicorn) are opt-in sessions (`nox -t ci`), never required by the report.
MAIN_STACKS = tuple(name for name in STACKS if LAUNCHER[name] == "app")
BOOLS = (False, True)
ARMS = [(agent, fixed) for fixed in BOOLS for agent in BOOLS]  # a stack's four sessions


# The patched build's local version label: gevent-websocket 0.10.1+fixed
# (tests/harness/builds.py labels the wheel, tests/harness/model.py reads it back).
PATCHED_LABEL = "fixed"


def build_name(fixed: bool) -> str:
    """How reports name a build: the session parameter `fixed=` stays `fixed` on the
    command line (the product's interface); everywhere else it is this word."""
    return "patched" if fixed else "vanilla"


def build_version(release: str, fixed: bool) -> str:
    """The version a server of this build reports: 0.10.1 or 0.10.1+fixed."""
    return f"{release}+{PATCHED_LABEL}" if fixed else release


def is_patched(version: str | None) -> bool:
    return str(version or "").endswith(f"+{PATCHED_LABEL}")


NOT = "¬"  # a label's "off": `rum ¬hello_goodbyer`


@dataclass(frozen=True, order=True)
class Cell:
    """One cell of the matrix: the one identity every writer and reader uses.

    A field is an axis.  Every form of a cell comes from the fields, in order:

    - ``key``: the values, a tuple (sorting, dict keys);
    - ``label()``: what a person reads, ``today agent ¬fixed rum ¬hello_goodbyer streaming``
      (the stack first, then each bool axis by name, ``¬`` when off; a str axis
      as ``name:value``);
    - ``slug()``: pytest ids, HTML ids and file names,
      ``today-agent_on-fixed_off-rum_on-hello_goodbyer_off-streaming_off`` (no ``=``
      nor space: ``pytest -k`` selects it); ``slug(COLUMN_AXES)`` is the test id of a
      cell within its session, ``rum_on-hello_goodbyer_off-streaming_off``;
    - ``Cell.parse(text)`` reads a label or a slug back.

    A new axis is one more field with a default (``handler: str = "gevent-websocket"``):
    an axis at its default is left out of labels and slugs, so every existing id and
    results file keeps its meaning, and ``parse`` fills it in.
    """

    stack: str
    agent: bool
    fixed: bool
    rum: bool
    hello_goodbyer: bool
    streaming: bool
    # The websocket handler that serves it (app/handlers.py): gevent-websocket's
    # WebSocketHandler (vanilla or patched, `fixed`), or one of [tool.handlers].
    handler: str = DEFAULT_HANDLER
    layer: str = NO_LAYER  # a request layer of [tool.layers] set up in the server

    @property
    def key(self) -> tuple[Any, ...]:
        return astuple(self)

    @property
    def arm(self) -> tuple[bool, bool]:
        """(agent, fixed): the row of the grid a session runs (tests/harness/records.py)."""
        return (self.agent, self.fixed)

    @property
    def build(self) -> str:
        return build_name(self.fixed)

    @property
    def seed_key(self) -> tuple[bool, bool, bool, bool]:
        """The seed's own (fixed, rum, hello_goodbyer, streaming) tuple."""
        return (self.fixed, self.rum, self.hello_goodbyer, self.streaming)

    @property
    def tracked_layer(self) -> str | None:
        """The layer whose end-of-request work the cell observes (``layer_finished``): its
        own, else the New Relic agent when it is on, else None."""
        if self.layer != NO_LAYER:
            return self.layer
        return AGENT_LAYER if self.agent else None

    @property
    def route(self) -> str:
        return "/streaming" if self.streaming else "/view"

    def on(self, stack: str) -> Cell:
        """The same cell on another stack (deploy read against today)."""
        return replace(self, stack=stack)

    def _shown(
        self,
        axes: Collection[str] | None,
        omit: Collection[str],
    ) -> Iterator[tuple[str, Any]]:
        """(field, value) of the axes a label or slug writes: not omitted, not at a default."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "stack" or f.name in omit or (axes is not None and f.name not in axes):
                continue
            if f.default is not MISSING and value == f.default and axes is None:
                continue
            yield f.name, value

    def label(self, omit: Collection[str] = ()) -> str:
        """``today agent ¬fixed rum ...``; ``omit`` drops axes a reader already knows
        (history: the stack and ``fixed``); ``Cell.parse(label, **those)`` reads it back."""
        words = [] if "stack" in omit else [self.stack]
        for name, value in self._shown(None, omit):
            words.append(
                (name if value else NOT + name) if isinstance(value, bool) else f"{name}:{value}"
            )
        return " ".join(words)

    def slug(self, axes: Collection[str] | None = None) -> str:
        """``today-agent_on-...``; with ``axes``, only those (a test id within a session)."""
        parts = [] if axes is not None else [self.stack]
        for name, value in self._shown(axes, ()):
            word = ("on" if value else "off") if isinstance(value, bool) else value
            parts.append(f"{name}_{word}")
        return "-".join(parts)

    @classmethod
    def parse(cls, text: str, **given: Any) -> Cell:
        """A label or a slug (whole, or with the axes ``given`` names left out) -> Cell."""
        names = {f.name: f for f in fields(cls)}
        values, text = dict(given), str(text).strip()
        is_slug = " " not in text and NOT not in text and re.search(r"_(on|off)(-|$)", text)
        if is_slug:
            tokens: list[str] = []
            for part in text.split("-"):
                name = part.rpartition("_")[0]
                # a value may hold "-" (gevent-websocket): glue it to its axis
                if tokens and not any(part.startswith(n + "_") for n in names if n != "stack"):
                    tokens[-1] += "-" + part
                else:
                    tokens.append(part)
            for token in tokens:
                axis = next((n for n in names if n != "stack" and token.startswith(n + "_")), None)
                if axis is None:
                    values["stack"] = token
                    continue
                value = token[len(axis) + 1 :]
                values[axis] = (
                    {"on": True, "off": False}.get(value, value) if _is_bool(names[axis]) else value
                )
        else:
            for token in text.split():
                name, colon, value = token.partition(":")
                if colon and name in names:
                    values[name] = value
                elif token.lstrip(NOT) in names and _is_bool(names[token.lstrip(NOT)]):
                    values[token.lstrip(NOT)] = not token.startswith(NOT)
                else:
                    values["stack"] = token
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(
                f"{text!r} is not a cell ({exc}); expected a label like "
                f"{cls('today', True, False, True, False, True).label()!r} or "
                "a slug like "
                f"{cls('today', True, False, True, False, True).slug()!r}"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """A record's "cell": its axes; an axis added since it was written takes its default."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _is_bool(f: Field[Any]) -> bool:
    return f.type in (bool, "bool")


# The grid's rows and columns: the session's arm, and the axes a session runs.
ROW_AXES = ("agent", "fixed")
COLUMN_AXES = ("rum", "hello_goodbyer", "streaming")
CELLS_TEST = "tests/matrix/test_cells.py::test_cell"


def node_id(cell: Cell) -> str:
    """The pytest node of one cell within its session, e.g. for a child pytest."""
    return f"{CELLS_TEST}[{cell.slug(COLUMN_AXES)}]"


def slug(name: str) -> str:
    """File name of a session: matrix(agent=False, fixed=True) -> matrix-agent-False-fixed-True"""
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def session_name(stack: str, agent: bool, fixed: bool) -> str:
    return f"{SESSION_KIND[stack]}(agent={agent}, fixed={fixed})"


def handler_session_name(handler: str, agent: bool) -> str:
    """The `nox -t ci` session of one handler's cells and checks on today's stack."""
    return f"handler(name={handler}, agent={agent})"


def checks_name(stack: str, agent: bool, fixed: bool) -> str:
    """The `nox -t ci` session of the other per-arm checks (test_app, lifeline, ...)."""
    return f"checks({stack}, agent={agent}, fixed={fixed})"


LAYER_COLUMN_AXES = ("layer", "hello_goodbyer", "streaming")


def layer_pins(name: str, stack: str) -> tuple[list[str] | None, str | None]:
    """(pins, None) of a layer on a stack, or (None, why it cannot run there)."""
    found = LAYERS[name]
    if stack in found:
        return list(found[stack]), None
    return None, found.get(f"{stack}-reason") or f"[tool.layers.{name}] has no {stack} pins"


def layer_install(name: str) -> list[str]:
    """How the layer's docs install it ([tool.layers.<name>].install), its distribution first."""
    return list(LAYERS[name].get("install", []))


def layer_sessions_ran(name: str, distribution: str) -> dict[str, str]:
    """{stack: release} of ``distribution`` in the layer's session pins: the releases at
    which `nox -s "layer(<stack>, <name>, ...)"` observes its facts."""
    found = {}
    for stack in MAIN_STACKS:
        pins, _ = layer_pins(name, stack)
        for pin in pins or []:
            req = Requirement(pin)
            if canonicalize_name(req.name) == canonicalize_name(distribution):
                found[stack] = next(iter(req.specifier)).version
    return found


# A user's pin of one of these distributions sets up that layer (`nox -s stack`).
LAYER_BY_DISTRIBUTION: dict[str, str] = {
    canonicalize_name(Requirement(install[0]).name): name
    for name in SESSION_LAYERS
    if (install := layer_install(name))
}


def layer_arms() -> list[tuple[str, str, bool]]:
    """(stack, layer, fixed) of every layer session, in the order nox runs them."""
    return [
        (stack, name, fixed)
        for stack in MAIN_STACKS
        for name in SESSION_LAYERS
        if layer_pins(name, stack)[0] is not None
        for fixed in BOOLS
    ]


def layer_session_name(stack: str, layer: str, fixed: bool | None) -> str:
    return f"layer({stack}, {layer}, fixed={fixed})"


def handler_layer_name(handler: str, layer: str) -> str:
    """One layer's cells on a handler: a pytest run of `handler(name=..., agent=False)`,
    named (and its results file) after that session and the layer."""
    return f"{handler_session_name(handler, False)} layer={layer}"


def handler_layers() -> list[str]:
    """The layers a handler session runs: every one with today's pins."""
    return [n for n in SESSION_LAYERS if layer_pins(n, "today")[0] is not None]


def control_layer(stack: str) -> str | None:
    """The layer whose sessions on ``stack`` also run the layer-off control: the first
    with pins there.  The control's cells are the same whichever layer's session runs
    them, so one per (stack, build) proves the difference (the cost bound)."""
    return next((n for n in SESSION_LAYERS if layer_pins(n, stack)[0] is not None), None)


def layer_cells(stack: str, fixed: bool, layer: str, handler: str = DEFAULT_HANDLER) -> list[Cell]:
    """A layer session's cells: hello_goodbyer x streaming with the layer on, then, in
    the stack's control_layer() session only, the same four with it off.  On another
    handler the layer-off four are already among its session's own cells (rum off)."""
    control = layer == control_layer(stack) and handler == DEFAULT_HANDLER
    return [
        Cell(stack, False, fixed, False, h, s, handler=handler, layer=on)
        for on in ((layer, NO_LAYER) if control else (layer,))
        for h, s in itertools.product(BOOLS, repeat=2)
    ]


def sessions() -> list[tuple[str, bool, bool]]:
    """Every (stack, agent, fixed) a plain `nox` has, in the order nox runs them."""
    return [(s, a, f) for s in MAIN_STACKS for a in BOOLS for f in BOOLS]


def cells(stack: str, agent: bool, fixed: bool) -> list[Cell]:
    """The 8 cells of one arm, in the grid's column order."""
    return [Cell(stack, agent, fixed, r, h, s) for r, h, s in itertools.product(BOOLS, repeat=3)]


# The seed's 32 observations, transcribed once, in the seed's own order and
# notation: "fixed,rum,hello_goodbyer,streaming: verdict", first with the
# agent, then without.  tests/unit/test_model.py checks this against the seed file.
SEED_WITH_AGENT = """
True,True,True,True: +
True,True,True,False: +
True,True,False,True: +
True,True,False,False: +
True,False,True,True: +
True,False,True,False: +
True,False,False,True: +
True,False,False,False: +
False,True,True,True: -
False,True,True,False: -
False,True,False,True: -
False,True,False,False: -
False,False,True,True: -
False,False,True,False: -
False,False,False,True: -
False,False,False,False: +
"""
SEED_WITHOUT_AGENT = """
True,True,True,True: +
True,True,True,False: +
True,True,False,True: +
True,True,False,False: +
True,False,True,True: +
True,False,True,False: +
True,False,False,True: +
True,False,False,False: +
False,True,True,True: -
False,True,True,False: -
False,True,False,True: -
False,True,False,False: +
False,False,True,True: -
False,False,True,False: -
False,False,False,True: -
False,False,False,False: +
"""


def parse_seed_list(text: str) -> list[tuple[tuple[bool, ...], str]]:
    """[(fixed, rum, hello_goodbyer, streaming), verdict] in the order written."""
    rows = []
    for line in text.strip().splitlines():
        key, verdict = line.split(":")
        flags = tuple(v.strip() == "True" for v in key.split(","))
        rows.append((flags, verdict.strip()))
    return rows


def seed_table() -> dict[tuple[bool, ...], str]:
    """{(agent, fixed, rum, hello_goodbyer, streaming): '+' or '-'}"""
    table: dict[tuple[bool, ...], str] = {}
    for agent, text in ((True, SEED_WITH_AGENT), (False, SEED_WITHOUT_AGENT)):
        for flags, verdict in parse_seed_list(text):
            table[(agent, *flags)] = verdict
    return table


def seed_verdict(cell: Cell) -> str:
    return seed_table()[(cell.agent, *cell.seed_key)]
