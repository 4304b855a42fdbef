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

from dataclasses import dataclass, field

SPREAD = 3  # releases probed over each side of the flips, to check the single-flip assumption


class Unusable(Exception):
    """A release that cannot be downloaded, built, installed or started; the reason says why."""


@dataclass
class Flip:
    before: str
    after: str
    skipped_between: list  # releases between the two that could not be probed
    changed: dict  # {cell: (verdict before, verdict after)} on the watched cells


@dataclass
class Search:
    releases: list  # sorted, oldest first
    probe: object  # probe(release, cells) -> {cell: verdict}; raises Unusable
    cells: list  # every cell, in a stable order
    spread: int = SPREAD
    # How independent probes run (the ends, the spread, the proofs): the builtin map, or
    # a thread pool's, to run them side by side.  Bisection itself is sequential.
    pmap: object = map
    results: dict = field(default_factory=dict)  # release -> {cell: verdict}
    skipped: dict = field(default_factory=dict)  # release -> reason
    log: list = field(default_factory=list)  # (release, purpose, cells run or None if skipped)
    watched: list = field(default_factory=list)
    low: str | None = None
    unproven: list = field(default_factory=list)  # flips' neighbours whose proof run failed
    high: str | None = None

    def run(self, release, cells, purpose):
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

    def untried(self, releases):
        return [r for r in releases if r not in self.results and r not in self.skipped]

    def signature(self, release):
        return tuple(self.results[release][c] for c in self.watched)

    def probed(self):
        """The usable releases within the ends whose watched cells are known, in order."""
        lo, hi = self.releases.index(self.low), self.releases.index(self.high)
        return [r for r in self.releases[lo:hi + 1] if r in self.results
                and all(c in self.results[r] for c in self.watched)]

    def disagreeing_pairs(self):
        known = self.probed()
        return [(a, b) for a, b in zip(known, known[1:], strict=False)
                if self.signature(a) != self.signature(b)]

    def between(self, a, b):
        return self.releases[self.releases.index(a) + 1:self.releases.index(b)]

    def bisect(self):
        while True:
            gaps = [(a, b) for a, b in self.disagreeing_pairs() if self.untried(self.between(a, b))]
            if not gaps:
                return
            a, b = gaps[0]
            candidates = self.untried(self.between(a, b))
            self.run(candidates[(len(candidates) - 1) // 2], self.watched, "bisect")

    def check_spread(self):
        """Probe ``spread`` untried releases spread evenly over every segment the flips leave."""
        if not self.watched:  # the ends agree: nothing to watch (a flip and back is not seen)
            return
        bounds = [self.low] + [r for pair in self.disagreeing_pairs() for r in pair] + [self.high]
        picks = []
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            segment = self.untried(self.between(a, b))
            n = min(self.spread, len(segment))
            picks += [segment[(2 * i + 1) * len(segment) // (2 * n)] for i in range(n)]
        list(self.pmap(lambda r: self.run(r, self.watched, "spread"), picks))

    def ends(self):
        """The first and the last usable release, walked to from both ends at once."""
        def walk(order, purpose):
            return next((r for r in order if self.run(r, self.cells, purpose) is not None), None)

        self.low, self.high = self.pmap(lambda args: walk(*args), [
            (self.releases, "range start"), (self.releases[::-1], "range end")])
        index = self.releases.index
        if self.low is None or self.high is None or index(self.low) >= index(self.high):
            usable = [r for r in self.releases if r in self.results and r not in self.skipped]
            raise Unusable(f"fewer than two usable releases in the range ({usable}); "
                           f"skipped: {self.skipped}")

    def flips(self):
        return [Flip(a, b, self.between(a, b),
                     {c: (self.results[a][c], self.results[b][c]) for c in self.watched
                      if self.results[a][c] != self.results[b][c]})
                for a, b in self.disagreeing_pairs()]

    def __call__(self):
        self.ends()
        self.watched = [c for c in self.cells if self.results[self.low][c]
                        != self.results[self.high][c]]
        self.bisect()
        self.check_spread()
        self.bisect()  # a second flip the spread revealed
        flips = self.flips()
        neighbours = list(dict.fromkeys(r for f in flips for r in (f.before, f.after)))
        for release, ran in zip(neighbours, self.pmap(
                lambda r: self.run(r, self.cells, "proof"), neighbours), strict=True):
            if ran is None:
                self.unproven.append(f"{release} ran its watched cells, but not all cells: "
                                     f"{self.skipped[release]}")
        return flips
