"""plan.json: the atlas's picks per axis (the rule in _releases.py), the stacks that
cover every installable pair of them whose axes can meet in a cell (_pairwise.py, PAIRS)
plus both sides of every boundary history proved, the pairs that do not install together
and why, and the plan's size.  The one definition of a plan: the runs, the table and
the command line read it through load_plan."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..cells import HISTORY, HISTORY_DATA, STACKS
from ..paths import DATA
from ..records import from_dict, to_dict
from ..userstack._registry import Registry
from ..userstack._request import served_handler
from . import _pairwise
from ._axes import (
    ATLAS_PYTHONS,
    AXES,
    BINARY,
    BY_NAME,
    HANDLER,
    PYTHON,
    Axis,
    can_meet,
    fixed_handlers,
    layer_axes,
)
from ._pairwise import Stack, Value
from ._releases import (
    RULE,
    Facts,
    candidates,
    facts,
    lookup_requires,
    paired,
    pick,
    requires_dist,
    span,
    with_requires,
)

PLAN = DATA / "atlas" / "plan.json"
SHOWN = 20  # stacks a diff names of those added (and dropped); the rest are counted
TOO_MANY = 12  # picks per axis above which the summary says the rule yields a lot
CELLS_PER_STACK = 32  # 4 arms (agent on/off x vanilla/patched) of 8 cells
CELLS_PER_LAYER = 8  # 4 cells on each of the two builds
# The estimate's figures: the bench's CPU time per cell, one server env's build.
SECONDS_PER_CELL = 0.8
SECONDS_PER_ENV = 40
HANDLER_PACKAGE = BY_NAME[HANDLER].package or "gevent-websocket"
PAIRS = (
    "the stacks cover every pair of picks of two axes that installs together, except two "
    "layers' (newrelic's among them): each run serves one layer, so two never meet in a cell"
)
LAYERS = [a.name for a in layer_axes()]  # left out of a stack where they cover no new pair
# The plan opens with a stack of each era, so that a sample of three spans them, then
# today's on each other handler, so that a sample of five has every handler with today's
# layers: on its Python, each axis's newest pick uploaded by the era's end that installs
# with those before.  (The middle era ends mid-2021: the rule has no Flask pick of 2020,
# 1.1.4 is of May 2021.)
ERAS = (
    (ATLAS_PYTHONS[-1], None, HANDLER_PACKAGE),
    ("3.8", "2021-06-30", HANDLER_PACKAGE),
    ("2.7", "2016-12-31", HANDLER_PACKAGE),
    *((ATLAS_PYTHONS[-1], None, h) for h in sorted(fixed_handlers())),
)


@dataclass
class Pick:
    """One value of an axis: the release, why the rule picked it, the registry's facts."""

    version: str  # as the axis names it: "3.8", "1.1.4", "gevent-websocket==0.10.1"
    why: list[str]
    package: str | None = None  # the distribution (None on the Python axis)
    facts: Facts | None = None
    paired: Facts | None = None  # plan.json "with": the axis's paired package's release
    sha256: str | None = None  # a handler pinned in [tool.handlers]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "why": self.why}
        if self.package:
            out["package"] = self.package
        if self.facts:
            out |= {
                ("release" if k == "version" else k): v for k, v in self.facts.to_json().items()
            }
        if self.paired:
            out["with"] = self.paired.version
            out["with_facts"] = self.paired.to_json()
        if self.sha256:
            out["sha256"] = self.sha256
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pick:
        return cls(
            version=data["version"],
            why=list(data["why"]),
            package=data.get("package"),
            facts=Facts.from_json({**data, "version": data["release"]})
            if "release" in data
            else None,
            paired=Facts.from_json(data["with_facts"]) if "with_facts" in data else None,
            sha256=data.get("sha256"),
        )

    def value(self, axis: str, paired_package: str | None) -> Value:
        """The pick as the pairwise generator sees it."""
        if self.facts is None or self.package is None:
            return Value(axis, self.version, pythons=frozenset([self.version]))
        pins = [(self.package, self.facts.version)]
        pythons = set(self.facts.pythons)
        if self.paired and paired_package:
            pins.append((paired_package, self.paired.version))
            pythons &= set(self.paired.pythons)
        return Value(
            axis, self.version, tuple(pins), frozenset(pythons), tuple(self.facts.requires)
        )


@dataclass
class AxisPicks:
    values: list[Pick]
    package: str | None = None
    paired: str | None = None  # plan.json "with"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": [p.to_json() for p in self.values]}
        if self.package:
            out["package"] = self.package
        if self.paired:
            out["with"] = self.paired
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AxisPicks:
        return cls(
            values=[Pick.from_json(v) for v in data["values"]],
            package=data.get("package"),
            paired=data.get("with"),
        )


@dataclass
class PlanStack:
    id: str  # results go under results/atlas/<id>/
    python: str
    pins: dict[str, str]  # exactly what userstack gets as NAME==V
    covers: int  # pairs it covers that no earlier stack did
    boundary: str | None = None  # "<history rule>: <package> <before>|<after>"
    values: dict[str, str] = field(default_factory=dict)  # axis -> its value here

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanStack:
        return from_dict(cls, dict(data))

    @property
    def cells(self) -> int:
        return CELLS_PER_STACK + CELLS_PER_LAYER * sum(a.name in self.values for a in layer_axes())

    def handler(self) -> str:
        """The websocket handler the pins install: gevent-websocket or one of [tool.handlers]."""
        return served_handler(self.pins)

    def args(self) -> list[str]:
        """The stack as the user-stack command's arguments."""
        return [f"{n}=={v}" for n, v in self.pins.items()] + ["--python", self.python]


@dataclass
class NotInstallable:
    pair: list[list[str]]  # [[axis, value], [axis, value]]
    reason: str


@dataclass
class Size:
    stacks: int
    cells: int
    estimated_seconds: int  # an estimate: SECONDS_PER_CELL and SECONDS_PER_ENV
    pairs: int  # of picks of two axes that install together
    pairs_covered: int


@dataclass
class Plan:
    rule: str
    registry_at: str
    axes: dict[str, AxisPicks]
    stacks: list[PlanStack]
    not_installable: list[NotInstallable]
    size: Size

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "registry_at": self.registry_at,
            "axes": {name: a.to_json() for name, a in self.axes.items()},
            "stacks": [s.to_json() for s in self.stacks],
            "not_installable": [to_dict(n) for n in self.not_installable],
            "size": to_dict(self.size),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            rule=data["rule"],
            registry_at=data["registry_at"],
            axes={n: AxisPicks.from_json(a) for n, a in data["axes"].items()},
            stacks=[PlanStack.from_json(s) for s in data["stacks"]],
            not_installable=[from_dict(NotInstallable, n) for n in data["not_installable"]],
            size=from_dict(Size, data["size"]),
        )

    def values(self) -> dict[str, list[Value]]:
        """Every axis's picks as the pairwise generator sees them, in the axes' order."""
        return {
            name: [p.value(name, picks.paired) for p in picks.values]
            for name, picks in self.axes.items()
        }

    def stack_values(
        self, stack: PlanStack, values: Mapping[str, Sequence[Value]] | None = None
    ) -> Stack:
        """The picks a stack runs (a boundary stack's other pins are no pick's);
        ``values``: self.values(), if the caller has them."""
        found = {}
        for axis, picks in (values or self.values()).items():
            for v in picks:
                if stack.values.get(axis) == v.version and (
                    axis == PYTHON or all(_same(stack.pins.get(n), r) for n, r in v.pins[:1])
                ):
                    found[axis] = v
        return found


def _same(a: str | None, b: str) -> bool:
    return a is not None and Version(a) == Version(b)


def load_plan(path: str | Path = PLAN) -> Plan:
    return Plan.from_json(json.loads(Path(path).read_text()))


def write_plan(plan: Plan, path: str | Path = PLAN) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(plan.to_json(), indent=1) + "\n")


# -- the picks, from the registry


def _axis_packages() -> set[str]:
    """The distributions whose Requires-Dist lines decide installability between axes."""
    names = {a.package for a in AXES if a.package} | {a.paired for a in AXES if a.paired}
    names |= set(fixed_handlers())
    return {canonicalize_name(n) for n in names if n}


def _binding(lines: Iterable[str]) -> list[str]:
    keep = _axis_packages()
    return [r for r in lines if canonicalize_name(Requirement(r).name) in keep]


def _picks(
    registry: Registry, axis: Axis, chosen: Mapping[str, list[str]] | None = None
) -> list[Pick]:
    """The axis's picks by the rule, or the ``chosen`` {version: why} (a sample's)."""
    assert axis.package is not None
    package = axis.package
    files = registry.files(package)
    found = {f.version: f for f in candidates(files, package in BINARY)}
    chosen = chosen if chosen is not None else pick(found)
    requires = lookup_requires(files[v] for v in chosen)
    out = []
    for (version, why), dist in zip(chosen.items(), requires, strict=True):
        f = with_requires(found[version], dist, axis.extras)
        f.requires = _binding(f.requires)
        with_ = paired(registry, f, axis.paired) if axis.paired else None
        shown = f"{package}=={version}" if axis.name == HANDLER else version
        out.append(Pick(shown, why, package, f, with_))
    return out


def _fixed_handler_picks(registry: Registry) -> list[Pick]:
    """The handlers pinned in [tool.handlers], one value each."""
    out = []
    pinned = fixed_handlers()
    files = [registry.check(name, h["version"]) for name, h in pinned.items()]
    requires = lookup_requires(files)
    for (name, h), found, dist in zip(pinned.items(), files, requires, strict=True):
        version = h["version"]
        f = with_requires(facts(version, found), dist, ())
        f.requires = _binding(f.requires)
        why = ["pinned in [tool.handlers]"]
        out.append(Pick(f"{name}=={version}", why, name, f, sha256=h["sha256"]))
    return out


def choose(registry: Registry) -> dict[str, AxisPicks]:
    """Every axis's picks and the registry's facts behind them."""
    axes = {
        PYTHON: AxisPicks(
            [Pick(p, ["a CPython the atlas runs on (pyenv has it)"]) for p in ATLAS_PYTHONS]
        )
    }
    for axis in AXES[1:]:
        picks = _picks(registry, axis)
        if axis.name == HANDLER:
            picks += _fixed_handler_picks(registry)
        axes[axis.name] = AxisPicks(
            picks, None if axis.name == HANDLER else axis.package, axis.paired
        )
    return axes


# -- the stacks


@dataclass
class _Candidate:
    """A stack before it has its id and place: the picks it covers, what it installs."""

    picks: Stack
    python: str
    pins: dict[str, str]
    boundary: str | None = None
    values: dict[str, str] = field(default_factory=dict)


def _pin_map(lines: Iterable[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        req = Requirement(line)
        (spec,) = req.specifier
        out[req.name] = spec.version
    return out


def _paired_greenlet(registry: Registry, pins: dict[str, str]) -> None:
    """Pin the greenlet gevent's release is paired with, as the picks are, if none is."""
    if "gevent" in pins and "greenlet" not in pins:
        version = pins["gevent"]
        files = registry.check("gevent", version)
        f = with_requires(facts(version, files, True), requires_dist(files), ())
        found = paired(registry, f, "greenlet")
        if found:
            pins["greenlet"] = found.version


def boundaries(registry: Registry, history: Path = HISTORY_DATA) -> list[_Candidate]:
    """Both sides of every flip history proved, each in the context it was proven in:
    the stack of [tool.stacks] it ran on, or a rule's Python and base pins."""
    out = []
    for path in sorted(history.glob("*.json")):
        data = json.loads(path.read_text())
        name = path.stem
        if "searches" in data:
            rule = HISTORY[name]
            contexts = [
                (rule["python"], {**_pin_map(rule["base"]), **s["at"]}, s) for s in data["searches"]
            ]
        else:
            stack = STACKS[data["stack"]]
            base = _pin_map([*stack["server"], *stack.get("agent", [])])
            base[HANDLER_PACKAGE] = stack[HANDLER_PACKAGE]["version"]
            contexts = [(".".join(data["python"].split(".")[:2]), base, data)]
        for python, base, search in contexts:
            at = "".join(f" at {k} {v}" for k, v in search.get("at", {}).items())
            for flip in search["flips"]:
                label = f"{name}: {search['package']} {flip['before']}|{flip['after']}{at}"
                for side in (flip["before"], flip["after"]):
                    pins = {**base, search["package"]: side}
                    _paired_greenlet(registry, pins)
                    out.append(_Candidate({}, python, pins, label, _axis_values(python, pins)))
    return out


def _axis_values(python: str, pins: Mapping[str, str]) -> dict[str, str]:
    """{axis: value} of a stack's pins, as the axes name their values."""
    by_name = {canonicalize_name(n): (n, v) for n, v in pins.items()}
    out = {PYTHON: python}
    for axis in AXES[1:]:
        names = [axis.package, *fixed_handlers()] if axis.name == HANDLER else [axis.package]
        found = [by_name[c] for n in names if n and (c := canonicalize_name(n)) in by_name]
        if found:
            name, version = found[0]
            out[axis.name] = f"{name}=={version}" if axis.name == HANDLER else version
    return out


def _pins(stack: Stack) -> dict[str, str]:
    return {n: v for value in stack.values() for n, v in value.pins}


def _candidate(picks: Stack, boundary: str | None = None) -> _Candidate:
    values = {a: v.version for a, v in picks.items()}
    return _Candidate(picks, picks[PYTHON].version, _pins(picks), boundary, values)


def eras(plan: Plan, values: Mapping[str, Sequence[Value]]) -> list[_Candidate]:
    """A stack of each of ERAS: on its Python, each axis's newest pick uploaded by the
    era's end that installs with those chosen before it (of the handlers, the era's)."""
    out = []
    for python, until, handler in ERAS:
        chosen = {PYTHON: next(v for v in values[PYTHON] if v.version == python)}
        for axis, picks in plan.axes.items():
            dated = [
                v
                for p, v in zip(picks.values, values[axis], strict=True)
                if p.facts
                and (until is None or p.facts.uploaded[:10] <= until)
                and (axis != HANDLER or p.package == handler)
            ]
            fitting = [
                v for v in dated if not any(_pairwise.conflict(v, c) for c in chosen.values())
            ]
            if fitting:
                chosen[axis] = fitting[-1]
        out.append(_candidate(chosen))
    return out


def build(axes: dict[str, AxisPicks], given: Sequence[_Candidate], registry_at: str) -> Plan:
    """The plan for these picks: a stack of each era, the boundaries' ``given``, then
    pairwise stacks for the pairs those leave; ordered the eras first, then most new
    pairs first."""
    plan = Plan(f"{RULE}; {PAIRS}", registry_at, axes, [], [], Size(0, 0, 0, 0, 0))
    values = plan.values()
    order = list(values)
    for c in given:
        c.picks = plan.stack_values(
            PlanStack("", c.python, c.pins, 0, c.boundary, c.values), values
        )
    opening = eras(plan, values)
    before = [c.picks for c in [*opening, *given]]
    generated = [_candidate(s) for s in _pairwise.generate(values, before, can_meet, LAYERS)]
    everything = [*opening, *given, *generated]
    ranked = _pairwise.most_first(
        [c.picks for c in everything], order, can_meet, first=len(opening)
    )
    by_id = {id(c.picks): c for c in everything}
    width = max(2, len(str(len(ranked))))
    stacks = [
        PlanStack(f"a{i:0{width}d}", c.python, c.pins, covers, c.boundary, c.values)
        for i, (picks, covers) in enumerate(ranked, 1)
        for c in [by_id[id(picks)]]
    ]
    return measure(plan, stacks)


def measure(plan: Plan, stacks: list[PlanStack]) -> Plan:
    """The plan with these stacks, the goal's pairs that do not install together, and
    its size."""
    values = plan.values()
    order = list(values)
    ok, bad = _pairwise.all_pairs(values, can_meet)
    plan.stacks = stacks
    plan.not_installable = [
        NotInstallable([[a.axis, a.version], [b.axis, b.version]], why)
        for (a, b), why in bad.items()
    ]
    covered = set().union(
        *(_pairwise.pairs_of(plan.stack_values(s, values), order, can_meet) for s in stacks)
    )
    cells = sum(s.cells for s in stacks)
    plan.size = Size(
        stacks=len(stacks),
        cells=cells,
        estimated_seconds=round(cells * SECONDS_PER_CELL + len(stacks) * SECONDS_PER_ENV),
        pairs=len(ok),
        pairs_covered=len(covered & set(ok)),
    )
    return plan


def refresh(registry: Registry | None = None) -> Plan:
    """The plan from the registry as it is now (network: PyPI's JSON API)."""
    registry = registry or Registry()
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return build(choose(registry), boundaries(registry), at)


# -- what people read


def diff(old: Plan, new: Plan) -> list[str]:
    """What changed between two plans, one line each: picks added and dropped per axis
    (a new release shows as a new pick), stacks added, dropped or changed."""
    lines = []
    for name in dict.fromkeys([*old.axes, *new.axes]):
        was = {p.version: p for p in old.axes[name].values} if name in old.axes else {}
        now = {p.version: p for p in new.axes[name].values} if name in new.axes else {}
        for v, p in now.items():
            if v not in was:
                uploaded = f", uploaded {p.facts.uploaded[:10]}" if p.facts else ""
                lines.append(f"{name}: new pick {v} ({'; '.join(p.why)}{uploaded})")
            elif was[v].why != p.why:
                lines.append(f"{name}: {v} now {'; '.join(p.why)} (was {'; '.join(was[v].why)})")
        for v, p in was.items():
            if v not in now:
                lines.append(f"{name}: dropped pick {v} (was {'; '.join(p.why)})")
    # Stacks by what they run, not by id: a new pick renumbers every stack after it.
    before = {_content(s): s for s in old.stacks}
    after = {_content(s): s for s in new.stacks}
    added = [s for k, s in after.items() if k not in before]
    dropped = [s for k, s in before.items() if k not in after]
    if added or dropped:
        kept = sum(_content(s) in before for s in new.stacks)
        lines.append(f"stacks: {len(added)} new, {len(dropped)} dropped, {kept} as before")
    lines += [f"stack {s.id}: new ({_describe(s)})" for s in added[:SHOWN]]
    lines += [f"stack {s.id}: dropped ({_describe(s)})" for s in dropped[:SHOWN]]
    if max(len(added), len(dropped)) > SHOWN:
        lines.append(f"(the first {SHOWN} of each shown)")
    return lines


def _content(s: PlanStack) -> tuple[str, tuple[tuple[str, str], ...]]:
    return s.python, tuple(sorted(s.pins.items()))


def _describe(s: PlanStack) -> str:
    return f"Python {s.python} " + " ".join(f"{n}=={v}" for n, v in s.pins.items())


def summary(plan: Plan) -> str:
    """The plan for a reader: the rule, each axis's picks and why, its size, coverage."""
    out = [f"rule: {plan.rule}", f"registry read at {plan.registry_at}", ""]
    for name, picks in plan.axes.items():
        head = f"{name}" + (f" ({picks.package} with {picks.paired})" if picks.paired else "")
        many = len(picks.values) > TOO_MANY
        note = (
            f": {len(picks.values)} picks, more than the ~{TOO_MANY} aimed at (the rule "
            "yields them all; none is dropped)"
            if many
            else f": {len(picks.values)} picks"
        )
        out.append(head + note)
        for p in picks.values:
            paired_with = (
                f" with {picks.paired} {p.paired.version}" if p.paired and picks.paired else ""
            )
            where = f" [Python {span(_value_pythons(p))}]" if p.facts else ""
            out.append(f"  {p.version}{paired_with}: {'; '.join(p.why)}{where}")
    size = plan.size
    bounds = sorted({s.boundary for s in plan.stacks if s.boundary})
    out += [
        "",
        f"stacks: {size.stacks} ({len([s for s in plan.stacks if s.boundary])} on history's "
        f"boundaries: {', '.join(bounds) or 'none'})",
        f"cells: {size.cells}; estimated machine time {_hours(size.estimated_seconds)} "
        f"(an estimate: {SECONDS_PER_CELL} s CPU per cell, {SECONDS_PER_ENV} s per env build)",
        f"pairs: {size.pairs_covered} of {size.pairs} installable pairs covered (of two "
        "axes that can meet in a cell: not two layers); "
        f"{len(plan.not_installable)} pairs do not install together (not_installable)",
    ]
    return "\n".join(out)


def _value_pythons(p: Pick) -> list[str]:
    pythons = set(p.facts.pythons if p.facts else [])
    if p.paired:
        pythons &= set(p.paired.pythons)
    return sorted(pythons)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
