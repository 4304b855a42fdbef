"""Greedy all-pairs: stacks in which every pair of axis values that installs together
appears at least once.  Deterministic: the same values give the same stacks."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ._axes import PYTHON
from ._releases import span


@dataclass(frozen=True)
class Value:
    """One axis value: what it pins, the Pythons it installs on, what it requires."""

    axis: str
    version: str  # as plan.json names it
    pins: tuple[tuple[str, str], ...] = ()  # (distribution, version) it puts in a stack
    pythons: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ()  # Requires-Dist lines that bind it

    @property
    def label(self) -> str:
        if self.axis == PYTHON:
            return f"Python {self.version}"
        return " with ".join(f"{name} {v}" for name, v in self.pins)


Pair = tuple[Value, Value]  # the first's axis comes first in the axes' order
Stack = dict[str, Value]  # axis -> its value in the stack


def _version(v: str) -> Version | None:
    try:
        return Version(v)
    except InvalidVersion:
        return None


def _unmet(a: Value, b: Value) -> str | None:
    """Why ``a``'s Requires-Dist excludes ``b``'s pins, or None."""
    pins = {canonicalize_name(n): v for n, v in b.pins}
    for line in a.requires:
        req = Requirement(line)
        pinned = pins.get(canonicalize_name(req.name))
        version = _version(pinned) if pinned else None
        if version is not None and not req.specifier.contains(version, prereleases=True):
            return f"{a.label} requires {req}"
    return None


def conflict(a: Value, b: Value) -> str | None:
    """Why two values of different axes cannot be installed together, or None."""
    for one, other in ((a, b), (b, a)):
        if one.axis == PYTHON:
            return (
                None
                if one.version in other.pythons
                else f"{other.label} installs on Python {span(other.pythons)}"
            )
    if not a.pythons & b.pythons:
        return (
            f"no Python installs both ({a.label}: {span(a.pythons)}; {b.label}: {span(b.pythons)})"
        )
    return _unmet(a, b) or _unmet(b, a)


def all_pairs(values: Mapping[str, Sequence[Value]]) -> tuple[list[Pair], dict[Pair, str]]:
    """(the pairs that install together, {pair: why not} of the others), axis order."""
    ok: list[Pair] = []
    bad: dict[Pair, str] = {}
    for x, y in itertools.combinations(values, 2):
        for a, b in itertools.product(values[x], values[y]):
            why = conflict(a, b)
            if why is None:
                ok.append((a, b))
            else:
                bad[(a, b)] = why
    return ok, bad


def pairs_of(stack: Stack, order: Sequence[str]) -> set[Pair]:
    """The pairs a stack covers, each in the axes' order."""
    present = [stack[axis] for axis in order if axis in stack]
    return set(itertools.combinations(present, 2))


def generate(values: Mapping[str, Sequence[Value]], given: Iterable[Stack] = ()) -> list[Stack]:
    """Stacks that, with ``given``, cover every pair that installs together: each starts
    from the first uncovered pair, then takes per axis (Python first) the value that
    installs with those chosen and covers most uncovered pairs (the first of equals)."""
    order = list(values)
    flat = [v for axis in order for v in values[axis]]  # a value's number: its place here
    number = {v: i for i, v in enumerate(flat)}
    ok, _ = all_pairs(values)
    fits = {(number[a], number[b]) for a, b in ok}
    fits |= {(j, i) for i, j in fits}
    uncovered = {(number[a], number[b]) for a, b in ok}
    for stack in given:
        uncovered -= {
            (number[a], number[b]) for a, b in pairs_of(stack, order) if a in number and b in number
        }
    fill = [PYTHON, *sorted((a for a in order if a != PYTHON), key=lambda a: -len(values[a]))]
    stacks: list[Stack] = []
    for a, b in ok:
        seed = (number[a], number[b])
        if seed not in uncovered:
            continue
        chosen = list(seed)
        for axis in fill:
            if axis in (a.axis, b.axis) or axis not in values:
                continue
            best, gain = None, -1
            for value in values[axis]:
                i = number[value]
                if all((i, c) in fits for c in chosen):
                    new = sum((min(i, c), max(i, c)) in uncovered for c in chosen)
                    if new > gain:
                        best, gain = i, new
            if best is not None:
                chosen.append(best)
        uncovered -= set(itertools.combinations(sorted(chosen), 2))
        stacks.append({flat[i].axis: flat[i] for i in sorted(chosen)})
    return stacks


def most_first(stacks: Sequence[Stack], order: Sequence[str]) -> list[tuple[Stack, int]]:
    """(stack, pairs it covers that no earlier one did), the stack covering most new
    pairs first at each step (the earlier of equals): lazy greedy, since a stack's new
    pairs only shrink as others are taken."""
    pairs = [pairs_of(s, order) for s in stacks]
    heap = [(-len(p), i) for i, p in enumerate(pairs)]
    heapq.heapify(heap)
    covered: set[Pair] = set()
    out: list[tuple[Stack, int]] = []
    while heap:
        _, i = heapq.heappop(heap)
        gain = len(pairs[i] - covered)
        if heap and (-gain, i) > heap[0]:
            heapq.heappush(heap, (-gain, i))
            continue
        covered |= pairs[i]
        out.append((stacks[i], gain))
    return out
