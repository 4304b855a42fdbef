"""A cell of the matrix, the seed's published table, and the stacks' sessions."""

from __future__ import annotations

import itertools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli on older interpreters
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def resolve_stacks(declared):
    """[tool.stacks] with each `base = "<stack>"` resolved: the one place that does it.

    A stack inherits its base's settings; its own lists of pins (server, agent)
    are added to the base's, any other key of its own replaces the base's.
    """
    resolved = {}

    def resolve(name, seen=()):
        if name in resolved:
            return resolved[name]
        own = declared[name]
        base = own.get("base")
        if base is None:
            resolved[name] = dict(own)
            return resolved[name]
        if base not in declared or base in seen or base == name:
            raise ValueError(f"[tool.stacks.{name}] base = {base!r}: expected one of the other "
                             f"stacks {sorted(set(declared) - {name})}, without a cycle; fix "
                             "pyproject.toml")
        stack = dict(resolve(base, (*seen, name)))
        for key, value in own.items():
            inherited = stack.get(key)
            stack[key] = ([*inherited, *value] if isinstance(value, list)
                          and isinstance(inherited, list) else value)
        resolved[name] = stack
        return stack

    for name in declared:
        resolve(name)
    return resolved


TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
STACKS = resolve_stacks(TOOL["stacks"])
HISTORY = TOOL.get("history", {})  # [tool.history.<package>]: tests/harness/history.py
# nox session name per stack
SESSION_KIND = {"today": "matrix", "seed": "seed", "deploy": "deploy"}
# How a stack's servers start (tests/harness/server.py): "app" is `python -m app`.
LAUNCHER = {name: stack.get("launcher", "app") for name, stack in STACKS.items()}
# A plain `nox` runs the stacks that `python -m app` serves; the others (deploy:
# gunicorn) are opt-in sessions (`nox -t ci`), never required by the report.
MAIN_STACKS = tuple(name for name in STACKS if LAUNCHER[name] == "app")
BOOLS = (False, True)


@dataclass(frozen=True)
class Cell:
    stack: str
    agent: bool
    fixed: bool
    rum: bool
    hello_goodbyer: bool
    streaming: bool

    @property
    def seed_key(self):
        """The seed's own (fixed, rum, hello_goodbyer, streaming) tuple."""
        return (self.fixed, self.rum, self.hello_goodbyer, self.streaming)

    @property
    def route(self):
        return "/streaming" if self.streaming else "/view"

    @property
    def slug(self):
        flags = "-".join(f"{k}={int(v)}" for k, v in asdict(self).items() if k != "stack")
        return f"{self.stack}-{flags}"

    def as_dict(self):
        return asdict(self)


def slug(name):
    """File name of a session: matrix(agent=False, fixed=True) -> matrix-agent-False-fixed-True"""
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def session_name(stack, agent, fixed):
    return f"{SESSION_KIND[stack]}(agent={agent}, fixed={fixed})"


def checks_name(stack, agent, fixed):
    """The `nox -t ci` session of the other per-arm checks (test_app, lifeline, ...)."""
    return f"checks({stack}, agent={agent}, fixed={fixed})"


def sessions():
    """Every (stack, agent, fixed) a plain `nox` has, in the order nox runs them."""
    return [(s, a, f) for s in MAIN_STACKS for a in BOOLS for f in BOOLS]


def cells(stack, agent, fixed):
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


def parse_seed_list(text):
    """[(fixed, rum, hello_goodbyer, streaming), verdict] in the order written."""
    rows = []
    for line in text.strip().splitlines():
        key, verdict = line.split(":")
        flags = tuple(v.strip() == "True" for v in key.split(","))
        rows.append((flags, verdict.strip()))
    return rows


def seed_table():
    """{(agent, fixed, rum, hello_goodbyer, streaming): '+' or '-'}"""
    table = {}
    for agent, text in ((True, SEED_WITH_AGENT), (False, SEED_WITHOUT_AGENT)):
        for flags, verdict in parse_seed_list(text):
            table[(agent, *flags)] = verdict
    return table


def seed_verdict(cell):
    return seed_table()[(cell.agent, *cell.seed_key)]
