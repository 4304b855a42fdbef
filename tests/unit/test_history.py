"""The bisection of tests/harness/bisect.py on planted histories (pure Python, no servers).

A planted history is a list of releases, the verdicts each one gives, and the
releases that cannot be built: each test checks that what was planted is found,
and that the search probes few releases.
"""

from __future__ import annotations

import math

import pytest

from tests.harness.bisect import Search, Unusable
from tests.harness.history import check_thresholds

RELEASES = [f"1.{n}" for n in range(40)]
CELLS = ["view", "streaming", "rum"]  # stand-ins for the 8 cells: any hashable will do


def planted(flips, unbuildable=()):
    """A probe over RELEASES: each flip (release, cell) toggles that cell from there on."""
    calls = []

    def probe(release, cells):
        calls.append((release, tuple(cells)))
        if release in unbuildable:
            raise Unusable(f"planted: {release} does not build")
        i = RELEASES.index(release)
        verdicts = {}
        for cell in cells:
            toggles = sum(1 for r, c in flips if c == cell and RELEASES.index(r) <= i)
            verdicts[cell] = "-+"[(toggles + (cell == "view")) % 2]
        return verdicts

    return probe, calls


def flips_of(search):
    return [(f.before, f.after, sorted(f.changed)) for f in search()]


def test_a_single_flip_is_found_with_its_neighbours_fully_run():
    probe, calls = planted([("1.23", "rum")])
    search = Search(RELEASES, probe, CELLS)
    assert flips_of(search) == [("1.22", "1.23", ["rum"])]
    assert search.watched == ["rum"]
    for release in ("1.22", "1.23", "1.0", "1.39"):
        assert set(search.results[release]) == set(CELLS), release
    bisect = [r for r, purpose, _ in search.log if purpose == "bisect"]
    assert len(bisect) <= math.ceil(math.log2(len(RELEASES))), bisect
    spread = [r for r, purpose, _ in search.log if purpose == "spread"]
    assert len(spread) == 2 * search.spread, spread  # both sides of the flip


def test_an_unbuildable_release_is_skipped_and_its_neighbours_bisected():
    # The flip is at 1.23; 1.22 does not build: the last usable release before is 1.21.
    # And the range's first release does not build: the range starts at 1.1.
    probe, _ = planted([("1.23", "streaming")], unbuildable={"1.0", "1.22"})
    search = Search(RELEASES, probe, CELLS)
    flips = search()
    assert search.low == "1.1"
    assert [(f.before, f.after, f.skipped_between) for f in flips] == [("1.21", "1.23", ["1.22"])]
    assert search.skipped == {
        "1.0": "planted: 1.0 does not build",
        "1.22": "planted: 1.22 does not build",
    }


def test_a_second_flip_is_found_by_the_spread_probes():
    # rum: "-" until 1.3, "+" from 1.3, "-" from 1.15, "+" from 1.25.  The ends differ
    # on it once; bisection alone finds one flip, the spread probes reveal the others.
    probe, _ = planted([("1.3", "rum"), ("1.15", "rum"), ("1.25", "rum")])
    search = Search(RELEASES, probe, CELLS)
    assert flips_of(search) == [
        ("1.2", "1.3", ["rum"]),
        ("1.14", "1.15", ["rum"]),
        ("1.24", "1.25", ["rum"]),
    ]
    assert {p for _, p, _ in search.log} == {
        "range start",
        "range end",
        "bisect",
        "spread",
        "proof",
    }


def test_no_difference_between_the_ends_is_no_flip():
    probe, _ = planted([])
    search = Search(RELEASES, probe, CELLS)
    assert search() == [] and search.watched == []


def test_too_few_usable_releases_is_an_error_that_names_them():
    probe, _ = planted([], unbuildable=set(RELEASES[1:]))
    with pytest.raises(Unusable, match=r"fewer than two usable releases.*1\.0"):
        Search(RELEASES, probe, CELLS)()


@pytest.mark.parametrize(
    "thresholds, problem",
    [
        ({"agent_skips_websockets": "2.68.0.50"}, None),
        ({"agent_skips_websockets": "2.70.0.51"}, "threshold agent_skips_websockets = 2.70.0.51"),
        ({}, "found 1 flip"),
    ],
)
def test_a_found_flip_must_equal_the_models_threshold(thresholds, problem):
    probe = None
    search = Search(["2.66.0.49", "2.68.0.50"], probe, CELLS)
    search.results = {"2.66.0.49": {"rum": "-"}, "2.68.0.50": {"rum": "+"}}
    search.low, search.high, search.watched = "2.66.0.49", "2.68.0.50", ["rum"]
    problems = check_thresholds("newrelic", thresholds, search.flips())
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


# -- the committed history (tests/harness/history_lock.py): a lock file ------------------


def committed_sample(changed_at="0.10"):
    """A HistoryPackage as --update writes it: one flip, 0.9.5 -> ``changed_at``."""
    from tests.harness.cells import Cell
    from tests.harness.records import HistoryPackage, from_dict

    releases = ["0.3.0", "0.9.5", "0.10", "0.10.1"]
    cell, other = (Cell("seed", False, False, False, False, s).label() for s in (True, False))

    def verdicts(r):
        return {cell: "+" if r in ("0.10", "0.10.1") else "-", other: "+"}

    return from_dict(
        HistoryPackage,
        {
            "package": "gevent-websocket",
            "stack": "seed",
            "python": "2.7.18",
            "agent": [False],
            "range": {
                "first": "0.3.0",
                "last": "0.10.1",
                "low": "0.3.0",
                "high": "0.10.1",
                "releases": releases,
            },
            "watched": [cell],
            "spread": 3,
            "probed": [
                {
                    "release": r,
                    "purposes": ["x"],
                    "verdicts": verdicts(r),
                    "build": {"sdist_sha256": f"sha-{r}"},
                }
                for r in releases
            ],
            "skipped": [],
            "flips": [
                {
                    "before": "0.9.5",
                    "after": changed_at,
                    "skipped_between": [],
                    "changed": {cell: ["-", "+"]},
                    "proof": {},
                    "diff": "",
                }
            ],
            "thresholds": {"handler_iterates": "0.10"},
            "problems": [],
            "status": "passed",
            "notes": [],
            "runs": [],
            "wall_time": 1.0,
            "load_before": [0.0],
        },
    ), cell


def test_a_reproof_runs_the_ends_and_each_flips_neighbours():
    from tests.harness.history_lock import evidence

    data, _ = committed_sample()
    assert evidence(data) == ["0.3.0", "0.9.5", "0.10", "0.10.1"]
    data.flips = []
    assert evidence(data) == ["0.3.0", "0.10.1"]


def test_the_same_facts_are_no_difference_and_a_changed_verdict_is_shown_by_label():
    from tests.harness.history_lock import difference, recorded

    data, cell = committed_sample()
    verdicts, sha256 = recorded(data)
    assert difference(data, data, verdicts, sha256, "this run") == ""
    verdicts["0.10"][cell] = "-"
    sha256["0.3.0"] = "sha-other"
    diff = difference(data, data, verdicts, sha256, "this run")
    assert "-0.10 ¬agent ¬rum ¬hello_goodbyer streaming: +\n" in diff
    assert "+0.10 ¬agent ¬rum ¬hello_goodbyer streaming: -\n" in diff
    assert "+0.3.0 sdist sha256 sha-other\n" in diff
    assert "True" not in diff and "False" not in diff, "cells by their readable label"


def test_a_moved_flip_or_a_new_release_in_the_range_is_a_difference():
    from tests.harness.history_lock import difference, recorded

    data, _ = committed_sample()
    moved, _ = committed_sample(changed_at="0.10.1")
    diff = difference(data, moved, *recorded(data), "this search")
    assert "-flip 0.9.5 -> 0.10:" in diff and "+flip 0.9.5 -> 0.10.1:" in diff
    moved, _ = committed_sample()
    moved.range.releases.append("0.10.2")
    assert difference(data, moved, *recorded(data), "this run").count("\n+in range: 0.10.2") == 1


def test_the_committed_history_proves_every_threshold_of_the_model():
    """tests/data/history/ holds every [tool.history] package, passed, with the flips at
    pyproject.toml's thresholds: what the report's causes cite."""
    from tests.harness import history_axes
    from tests.harness.cells import HISTORY
    from tests.harness.history_lock import read_data, thresholds

    for package, entry in HISTORY.items():
        if "axes" in entry:  # a rule on two packages: its four searches
            rule = history_axes.read_data(package)
            assert rule.status == "passed", [s.problems for s in rule.searches]
            assert history_axes.thresholds(package, rule) == []
            continue
        data = read_data(package)
        assert data.status == "passed" and data.problems == [], (package, data.problems)
        assert thresholds(data) == [], thresholds(data)
        assert data.thresholds == entry["thresholds"], (
            f"{package}: pyproject.toml's thresholds changed since the data was written: run "
            f'nox -s "history({package})" -- --update'
        )
