"""Which releases changed a cell: bisection over a sorted release list.

Pure logic, no servers: ``search()`` is given the releases and a ``probe``
(release, cells) -> {cell: verdict} that raises :class:`Unusable` for a release
that cannot be downloaded, built or started (skipped, as ``git bisect skip``
does).  tests/harness/history.py gives it a probe that runs the matrix's cells;
tests/unit/test_history.py one with planted flips.

1. The range's ends: the first and the last usable release, all cells each.
2. The watched cells: those whose verdict differs between the ends.
3. Bisection: while two probed releases next to each other (among those
   probed) disagree on the watched cells and an untried release lies between
   them, probe the middle one.  Each remaining disagreeing pair is a flip.
4. The single-flip check: ``spread`` untried releases spread evenly over each
   side of the flips (each segment between the ends and the flips) are probed;
   a disagreement they reveal is bisected to its own flip, a finding.
5. The proof: all cells at the last release before and the first after each flip.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C", bound=Hashable)  # a cell: tests/harness/cells.Cell, or a name in unit tests
SPREAD = 3  # releases probed over each side of the flips, to check the single-flip assumption


class Unusable(Exception):
    """A release that cannot be downloaded, built, installed or started; the reason says why."""


@dataclass
class Flip(Generic[C]):
    before: str
    after: str
    skipped_between: list[str]  # releases between the two that could not be probed
    changed: dict[C, tuple[str, str]]  # cell: (verdict before, verdict after), watched cells


@dataclass
class Search(Generic[C]):
    releases: list[str]  # sorted, oldest first
    probe: Callable[[str, list[C]], Mapping[C, str]]  # (release, cells); raises Unusable
    cells: list[C]  # every cell, in a stable order
    spread: int = SPREAD
    # How independent probes run (the ends, the spread, the proofs): the builtin map, or
    # a thread pool's, to run them side by side.  Bisection itself is sequential.
    pmap: Callable[..., Iterator[Any]] = map
    results: dict[str, dict[C, str]] = field(default_factory=dict)  # release -> {cell: verdict}
    skipped: dict[str, str] = field(default_factory=dict)  # release -> reason
    # (release, purpose, cells run or None if skipped)
    log: list[tuple[str, str, list[C] | None]] = field(default_factory=list)
    watched: list[C] = field(default_factory=list)
    low: str | None = None
    unproven: list[str] = field(default_factory=list)  # flips' neighbours whose proof run failed
    high: str | None = None

    def run(self, release: str, cells: Sequence[C], purpose: str) -> dict[C, str] | None:
        """The verdicts of ``cells`` at ``release`` (probing what is not known yet); None if
        the release is unusable."""
        if release in self.skipped:
            return None
        known = self.results.get(release, {})
        need = [c for c in cells if c not in known]
        if need:
            try:
                got = self.probe(release, need)
            except Unusable as exc:
                self.skipped[release] = str(exc)
                self.log.append((release, purpose, None))
                return None
            missing = [c for c in need if c not in got]
            if missing:
                raise AssertionError(f"probe of {release} returned no verdict for {missing}")
            self.results.setdefault(release, {}).update({c: got[c] for c in need})
        self.log.append((release, purpose, need))  # need == []: known already (a proof)
        return {c: self.results[release][c] for c in cells}

    def untried(self, releases: Sequence[str]) -> list[str]:
        return [r for r in releases if r not in self.results and r not in self.skipped]

    def signature(self, release: str) -> tuple[str, ...]:
        return tuple(self.results[release][c] for c in self.watched)

    def probed(self) -> list[str]:
        """The usable releases within the ends whose watched cells are known, in order."""
        assert self.low is not None and self.high is not None  # ends() found them
        lo, hi = self.releases.index(self.low), self.releases.index(self.high)
        return [
            r
            for r in self.releases[lo : hi + 1]
            if r in self.results and all(c in self.results[r] for c in self.watched)
        ]

    def disagreeing_pairs(self) -> list[tuple[str, str]]:
        known = self.probed()
        return [
            (a, b)
            for a, b in zip(known, known[1:], strict=False)
            if self.signature(a) != self.signature(b)
        ]

    def between(self, a: str, b: str) -> list[str]:
        return self.releases[self.releases.index(a) + 1 : self.releases.index(b)]

    def bisect(self) -> None:
        while True:
            gaps = [(a, b) for a, b in self.disagreeing_pairs() if self.untried(self.between(a, b))]
            if not gaps:
                return
            a, b = gaps[0]
            candidates = self.untried(self.between(a, b))
            self.run(candidates[(len(candidates) - 1) // 2], self.watched, "bisect")

    def check_spread(self) -> None:
        """Probe ``spread`` untried releases spread evenly over every segment the flips leave."""
        if not self.watched:  # the ends agree: nothing to watch (a flip and back is not seen)
            return
        assert self.low is not None and self.high is not None  # ends() found them
        bounds = [self.low] + [r for pair in self.disagreeing_pairs() for r in pair] + [self.high]
        picks = []
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            segment = self.untried(self.between(a, b))
            n = min(self.spread, len(segment))
            picks += [segment[(2 * i + 1) * len(segment) // (2 * n)] for i in range(n)]
        list(self.pmap(lambda r: self.run(r, self.watched, "spread"), picks))

    def ends(self) -> None:
        """The first and the last usable release, walked to from both ends at once."""

        def walk(order: Sequence[str], purpose: str) -> str | None:
            return next((r for r in order if self.run(r, self.cells, purpose) is not None), None)

        self.low, self.high = self.pmap(
            lambda args: walk(*args),
            [(self.releases, "range start"), (self.releases[::-1], "range end")],
        )
        index = self.releases.index
        if self.low is None or self.high is None or index(self.low) >= index(self.high):
            usable = [r for r in self.releases if r in self.results and r not in self.skipped]
            raise Unusable(
                f"fewer than two usable releases in the range ({usable}); skipped: {self.skipped}"
            )

    def flips(self) -> list[Flip[C]]:
        return [
            Flip(
                a,
                b,
                self.between(a, b),
                {
                    c: (self.results[a][c], self.results[b][c])
                    for c in self.watched
                    if self.results[a][c] != self.results[b][c]
                },
            )
            for a, b in self.disagreeing_pairs()
        ]

    def __call__(self) -> list[Flip[C]]:
        self.ends()
        assert self.low is not None and self.high is not None  # or ends() raised
        self.watched = [
            c for c in self.cells if self.results[self.low][c] != self.results[self.high][c]
        ]
        self.bisect()
        self.check_spread()
        self.bisect()  # a second flip the spread revealed
        flips = self.flips()
        neighbours = list(dict.fromkeys(r for f in flips for r in (f.before, f.after)))
        for release, ran in zip(
            neighbours,
            self.pmap(lambda r: self.run(r, self.cells, "proof"), neighbours),
            strict=True,
        ):
            if ran is None:
                self.unproven.append(
                    f"{release} ran its watched cells, but not all cells: {self.skipped[release]}"
                )
        return flips
