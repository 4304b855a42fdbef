"""Greedy all-pairs: stacks in which every pair of axis values of the goal (two axes
that can meet, ``meets``) that installs together appears at least once; a stack never
holds two values that do not install together, whether or not their axes meet.
Deterministic: the same values give the same stacks."""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
Meets = Callable[[str, str], bool]  # whether the pairs of two axes' values are a goal


def every(x: str, y: str) -> bool:
    """Every two axes meet."""
    return True


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


def all_pairs(
    values: Mapping[str, Sequence[Value]], meets: Meets = every
) -> tuple[list[Pair], dict[Pair, str]]:
    """(the pairs of axes that meet that install together, {pair: why not} of the
    others), axis order."""
    ok: list[Pair] = []
    bad: dict[Pair, str] = {}
    for x, y in itertools.combinations(values, 2):
        if not meets(x, y):
            continue
        for a, b in itertools.product(values[x], values[y]):
            why = conflict(a, b)
            if why is None:
                ok.append((a, b))
            else:
                bad[(a, b)] = why
    return ok, bad


def pairs_of(stack: Stack, order: Sequence[str], meets: Meets = every) -> set[Pair]:
    """The pairs of axes that meet a stack covers, each in the axes' order."""
    present = [stack[axis] for axis in order if axis in stack]
    return {(a, b) for a, b in itertools.combinations(present, 2) if meets(a.axis, b.axis)}


def generate(
    values: Mapping[str, Sequence[Value]],
    given: Iterable[Stack] = (),
    meets: Meets = every,
    optional: Collection[str] = (),
) -> list[Stack]:
    """Stacks that, with ``given``, cover every pair of axes that meet that installs
    together: each starts from the first uncovered pair (of the two axes with most pairs
    first), then takes per axis the value that installs with every one chosen and covers
    most uncovered pairs (the first of equals; the Python: the one that lets the other
    axes cover most); a value of an ``optional`` axis that covers none is left out."""
    order = list(values)
    flat = [v for axis in order for v in values[axis]]  # a value's number: its place here
    number = {v: i for i, v in enumerate(flat)}
    fits = {(number[a], number[b]) for a, b in all_pairs(values)[0]}
    fits |= {(j, i) for i, j in fits}
    goal, _ = all_pairs(values, meets)
    uncovered = {(number[a], number[b]) for a, b in goal}
    for stack in given:
        uncovered -= {
            (number[a], number[b])
            for a, b in pairs_of(stack, order, meets)
            if a in number and b in number
        }
    fill = [PYTHON, *sorted((a for a in order if a != PYTHON), key=lambda a: -len(values[a]))]
    # Seeds from the two axes with most pairs first: at least that many stacks are
    # needed, and the others' pairs then fill them.
    among = collections.Counter((a.axis, b.axis) for a, b in goal)

    def best(axis: str, chosen: list[int]) -> tuple[int | None, int]:
        """The value of ``axis`` that installs with those chosen and covers most uncovered
        pairs with them (the first of equals), and how many."""
        found, gain = None, -1
        for value in values[axis]:
            i = number[value]
            if all((i, c) in fits for c in chosen):
                new = sum((min(i, c), max(i, c)) in uncovered for c in chosen)
                if new > gain:
                    found, gain = i, new
        return found, gain

    def ahead(chosen: list[int], later: Sequence[str]) -> int:
        """The pairs the best values of the ``later`` axes would cover (one step)."""
        return sum(max(0, best(x, chosen)[1]) for x in later)

    stacks: list[Stack] = []
    for a, b in sorted(goal, key=lambda p: -among[p[0].axis, p[1].axis]):
        seed = (number[a], number[b])
        if seed not in uncovered:
            continue
        chosen = list(seed)
        rest = [x for x in fill if x not in (a.axis, b.axis) and x in values]
        for n, axis in enumerate(rest):
            found: int | None
            if axis == PYTHON:  # the one that lets the others cover most
                fitting = [
                    number[v] for v in values[axis] if all((number[v], c) in fits for c in chosen)
                ]
                found = max(
                    fitting, key=lambda i: (ahead([*chosen, i], rest[n + 1 :]), -i), default=None
                )
            else:
                found, _ = best(axis, chosen)
            if found is not None:
                chosen.append(found)
        for i in [i for i in chosen[2:] if flat[i].axis in optional]:
            if not any((min(i, c), max(i, c)) in uncovered for c in chosen):
                chosen.remove(i)  # its runs would show no new pair
        uncovered -= set(itertools.combinations(sorted(chosen), 2))
        stacks.append({flat[i].axis: flat[i] for i in sorted(chosen)})
    return stacks


def most_first(
    stacks: Sequence[Stack], order: Sequence[str], meets: Meets = every, first: int = 0
) -> list[tuple[Stack, int]]:
    """(stack, pairs it covers that no earlier one did): the ``first`` stacks in their
    place, then the stack covering most new pairs at each step (the earlier of equals):
    lazy greedy, since a stack's new pairs only shrink as others are taken."""
    pairs = [pairs_of(s, order, meets) for s in stacks]
    covered: set[Pair] = set()
    out: list[tuple[Stack, int]] = []
    for i in range(min(first, len(stacks))):
        out.append((stacks[i], len(pairs[i] - covered)))
        covered |= pairs[i]
    heap = [(-len(pairs[i] - covered), i) for i in range(len(out), len(stacks))]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        gain = len(pairs[i] - covered)
        if heap and (-gain, i) > heap[0]:
            heapq.heappush(heap, (-gain, i))
            continue
        covered |= pairs[i]
        out.append((stacks[i], gain))
    return out
