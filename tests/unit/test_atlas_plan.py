"""The atlas's plan (tests/harness/atlas/_releases.py, _pairwise.py, _plan.py), offline:
the selection rule on hand-made release lists, and the committed plan.json checked
against its own registry facts: every installable pair of two axes that can meet in a
cell in a stack (two layers never do), no stack holding a pair that does not install,
both sides of every boundary history proved, not_installable exactly the goal's pairs
that do not install, a sample that spans the eras."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from packaging.version import Version

from tests.harness.atlas import _pairwise
from tests.harness.atlas._axes import AXES, LAYER_AXES, PYTHON, can_meet, fixed_handlers
from tests.harness.atlas._pairwise import Value, all_pairs, conflict, generate, pairs_of
from tests.harness.atlas._plan import ERAS, PLAN, TOO_MANY, Plan, diff, load_plan, summary
from tests.harness.atlas._releases import Facts, candidates, paired, pick
from tests.harness.cells import HISTORY_DATA
from tests.harness.userstack._registry import Registry


def _file(
    version: str, uploaded: str = "2020-01-01", requires_python: str | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "filename": f"pkg-{version}.tar.gz",
        "upload_time_iso_8601": f"{uploaded}T12:00:00Z",
        "requires_python": requires_python,
        "yanked": False,
        "size": 1,
        **kw,
    }


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(PLAN)


def test_rule_picks_oldest_highest_of_each_line_and_latest() -> None:
    versions = ["0.9.1", "0.9.3", "0.10.0", "1.0", "1.2", "1.10.1", "2.0.1", "2.1"]
    assert pick(reversed(versions)) == {
        "0.9.1": ["oldest that installs"],
        "0.9.3": ["highest of 0.9"],
        "0.10.0": ["highest of 0.10"],
        "1.10.1": ["highest of 1"],  # by version, not by string
        "2.1": ["highest of 2", "latest"],
    }


def test_candidates_skip_yanked_prereleases_and_releases_no_python_installs() -> None:
    releases = {
        "1.0": [_file("1.0")],
        "1.1": [_file("1.1", yanked=True)],
        "1.2rc1": [_file("1.2rc1")],
        "1.3": [_file("1.3", requires_python=">=3.14")],  # no atlas Python
        "1.4": [],  # a release without files
        "1.5": [_file("1.5", requires_python=">=3.8")],
    }
    found = candidates(releases)
    assert [f.version for f in found] == ["1.0", "1.5"]
    assert found[1].pythons == ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
    assert candidates({"1.0": [_file("1.0")]}, binary=True) == []  # gevent: no wheel


def test_only_prereleases_count_each_0_n_a_minor_line() -> None:
    releases = {v: [_file(v)] for v in ["0.12b0", "0.12b1", "0.13b0", "0.14b0", "0.14b2"]}
    chosen = pick(f.version for f in candidates(releases))
    assert chosen == {
        "0.12b0": ["oldest that installs"],
        "0.12b1": ["highest of 0.12"],
        "0.13b0": ["highest of 0.13"],
        "0.14b2": ["highest of 0.14", "latest"],
    }
    releases["1.0"] = [_file("1.0")]  # one final release: the pre-releases no longer count
    assert [f.version for f in candidates(releases)] == ["1.0"]


class _Offline(Registry):
    def __init__(self, releases: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
        super().__init__()
        self.releases = releases


def test_paired_release_is_the_newest_admitted_by_the_picks_era() -> None:
    registry = _Offline(
        {
            "greenlet": {
                v: [_file(v, day, filename=f"greenlet-{v}-cp38-cp38-manylinux1_x86_64.whl")]
                for v, day in [
                    ("0.4.16", "2020-06-05"),
                    ("0.4.17", "2020-09-22"),
                    ("3.0.0", "2023-10-02"),
                ]
            }
        }
    )
    gevent = Facts(
        "20.9.0", "2020-09-22T08:00:00+00:00", None, False, ["3.8"], ["greenlet>=0.4.16"]
    )
    found = paired(registry, gevent, "greenlet")
    assert found is not None and found.version == "0.4.17"  # not greenlet 3 (another ABI)
    old = Facts("1.0", "2015-01-01T00:00:00+00:00", None, False, ["3.8"], ["greenlet>=0.4.17"])
    found = paired(registry, old, "greenlet")
    assert found is not None and found.version == "0.4.17"  # none by then: the first after


def test_conflict_reads_requires_python_and_requires_dist() -> None:
    py27 = Value(PYTHON, "2.7", pythons=frozenset(["2.7"]))
    flask3 = Value("flask", "3.1.3", (("Flask", "3.1.3"),), frozenset(["3.9", "3.13"]))
    flask1 = Value("flask", "1.1.4", (("Flask", "1.1.4"),), frozenset(["2.7", "3.9"]))
    sock = Value(
        "handler",
        "flask-sock==0.7.0",
        (("flask-sock", "0.7.0"),),
        frozenset(["3.9"]),
        ("flask>=2",),
    )
    assert conflict(py27, flask3) == "Flask 3.1.3 installs on Python 3.9, 3.13"
    assert conflict(flask1, sock) == "flask-sock 0.7.0 requires flask>=2"
    assert conflict(flask3, sock) is None and conflict(py27, flask1) is None


def test_generate_covers_every_installable_pair_and_never_a_conflict() -> None:
    pythons = [Value(PYTHON, p, pythons=frozenset([p])) for p in ("2.7", "3.8", "3.12")]
    flasks = [
        Value("flask", "1.1.4", (("Flask", "1.1.4"),), frozenset(["2.7", "3.8"])),
        Value("flask", "3.1.3", (("Flask", "3.1.3"),), frozenset(["3.8", "3.12"])),
    ]
    handlers = [
        Value("handler", "a", (("a", "1"),), frozenset(["2.7", "3.8", "3.12"])),
        Value("handler", "b", (("b", "1"),), frozenset(["3.8", "3.12"]), ("flask>=2",)),
    ]
    layers = [Value("layer", v, (("layer", v),), frozenset(["3.8", "3.12"])) for v in "xyz"]
    values = {PYTHON: pythons, "flask": flasks, "handler": handlers, "layer": layers}
    stacks = generate(values)
    assert stacks == generate(values)  # deterministic
    ok, bad = all_pairs(values)
    covered = set().union(*(pairs_of(s, list(values)) for s in stacks))
    assert set(ok) <= covered
    assert not covered & set(bad), "a stack holds a pair that does not install"
    assert (flasks[0], handlers[1]) in bad


def test_two_layers_never_meet_in_a_cell_every_other_two_axes_do() -> None:
    assert {"newrelic", "ddtrace", "sentry-sdk", "opentelemetry-instrumentation-wsgi"} <= LAYER_AXES
    assert not can_meet("ddtrace", "opentelemetry-instrumentation-flask")
    assert not can_meet("newrelic", "sentry-sdk")  # the agent arm serves no other layer
    assert can_meet("flask", "ddtrace") and can_meet(PYTHON, "newrelic")
    assert can_meet("gevent", "handler")


def test_generate_covers_the_goal_and_installs_every_pair_it_holds() -> None:
    """x and y never meet: their pairs are no goal, yet no stack holds y 3 with x 3 (y 3
    requires x != 3), and a y that adds no pair is left out where y is optional."""
    python = [Value(PYTHON, "3.8", pythons=frozenset(["3.8"]))]
    flask = [Value("flask", "1.0", (("Flask", "1.0"),), frozenset(["3.8"]))]
    xs = [Value("x", v, (("x", v),), frozenset(["3.8"])) for v in "1234"]
    ys = [Value("y", v, (("y", v),), frozenset(["3.8"]), ("x!=3",) * (v == "3")) for v in "123"]
    values = {PYTHON: python, "flask": flask, "x": xs, "y": ys}

    def meets(a: str, b: str) -> bool:
        return {a, b} != {"x", "y"}

    _, bad = all_pairs(values)
    assert (xs[2], ys[2]) in bad
    goal, _ = all_pairs(values, meets)
    for optional, with_y in [((), 4), (("y",), 3)]:
        stacks = generate(values, meets=meets, optional=optional)
        assert len(stacks) == len(xs), "one stack per x: the pairs of x and y are no goal"
        assert sum("y" in s for s in stacks) == with_y, optional
        held = set().union(*(pairs_of(s, list(values)) for s in stacks))
        assert set(goal) <= held and not held & set(bad)


def test_plan_covers_every_installable_pair_of_axes_that_meet(plan: Plan) -> None:
    values = plan.values()
    order = list(values)
    ok, bad = all_pairs(values, can_meet)
    _, never = all_pairs(values)  # whether or not the two axes meet
    covered: set[_pairwise.Pair] = set()
    for stack in plan.stacks:
        pairs = pairs_of(plan.stack_values(stack, values), order)
        inside = [f"{a.label} + {b.label}: {never[(a, b)]}" for a, b in pairs if (a, b) in never]
        assert not inside, f"stack {stack.id} holds pairs that do not install: {inside}"
        covered |= pairs
    missing = set(ok) - covered
    example = [f"{a.label} + {b.label}" for a, b in list(missing)[:3]]
    assert not missing, f"{len(missing)} installable pairs in no stack, e.g. {example}"
    assert plan.size.pairs == plan.size.pairs_covered == len(ok)
    recorded = {tuple(map(tuple, n.pair)): n.reason for n in plan.not_installable}
    assert recorded == {((a.axis, a.version), (b.axis, b.version)): r for (a, b), r in bad.items()}
    assert not [p for p in recorded if {p[0][0], p[1][0]} <= LAYER_AXES]


def test_plan_has_both_sides_of_every_boundary_history_proved(plan: Plan) -> None:
    flips = []
    for path in sorted(HISTORY_DATA.glob("*.json")):
        data = json.loads(path.read_text())
        for search in data.get("searches", [data]):
            flips += [(search["package"], f["before"], f["after"]) for f in search["flips"]]
    assert len(flips) >= 4
    for package, before, after in flips:
        for side in (before, after):
            assert any(s.boundary and s.pins.get(package) == side for s in plan.stacks), (
                f"no boundary stack runs {package} {side} ({before} -> {after})"
            )
    # gevent 20.9.0's greenlet is of its era: greenlet 3 is another ABI
    gevent_20_9 = [s for s in plan.stacks if s.pins.get("gevent") == "20.9.0"]
    assert gevent_20_9 and all(Version(s.pins["greenlet"]) < Version("1") for s in gevent_20_9)


def test_plan_ids_order_and_picks(plan: Plan) -> None:
    ids = [s.id for s in plan.stacks]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    covers = [s.covers for s in plan.stacks[len(ERAS) :]]
    assert covers == sorted(covers, reverse=True), "stacks covering most pairs come next"
    assert list(plan.axes) == [a.name for a in AXES]
    for name, axis in plan.axes.items():
        facts = [p.facts for p in axis.values if p.facts and "latest" in p.why]
        if name == PYTHON or not facts:
            continue
        versions = [
            Version(p.facts.version)
            for p in axis.values
            if p.facts and p.package == axis.values[0].package
        ]
        assert Version(facts[0].version) == max(versions), name
        assert "oldest that installs" in axis.values[0].why, name
        assert not any(p.facts.yanked for p in axis.values if p.facts), name


def test_plan_opens_with_a_stack_of_each_era(plan: Plan) -> None:
    """--sample 3 spans the eras: each stack on its era's Python, of picks uploaded by
    the era's end, today's of the latest picks, 2016's of the experiment's handler."""
    uploaded = {
        (axis, p.version): p.facts.uploaded
        for axis, picks in plan.axes.items()
        for p in picks.values
        if p.facts
    }
    for stack, (python, until, handler) in zip(plan.stacks, ERAS, strict=False):
        assert stack.handler() == handler, stack.id
        assert stack.python == python and not stack.boundary, stack.id
        assert len(stack.values) > 4, f"{stack.id}: the server's axes and a layer at least"
        latest = max(uploaded[a, v] for a, v in stack.values.items() if a != PYTHON)
        assert until is None or latest[:10] <= until, f"{stack.id}: a pick of {latest}"
    today, _, then, *others = plan.stacks[: len(ERAS)]
    assert {s.handler() for s in others} == set(fixed_handlers()), "today's on each handler"
    for axis in ("flask", "gevent"):
        assert today.values[axis] == plan.axes[axis].values[-1].version, axis
    assert then.pins["gevent-websocket"] == "0.9.5"  # 2016's: the iterator never runs


def test_plan_round_trips(plan: Plan) -> None:
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()


def test_diff_reports_a_new_release_and_a_changed_stack(plan: Plan) -> None:
    assert diff(plan, plan) == []
    new = Plan.from_json(copy.deepcopy(plan.to_json()))
    sentry = new.axes["sentry-sdk"].values
    latest = sentry[-1]
    latest.why = [w for w in latest.why if w != "latest"]
    sentry.append(copy.deepcopy(latest))
    sentry[-1].version, sentry[-1].why = "99.0.0", ["highest of 99", "latest"]
    new.stacks[0].pins["sentry-sdk"] = "99.0.0"
    lines = diff(plan, new)
    assert "sentry-sdk: new pick 99.0.0 (highest of 99; latest, uploaded" in lines[1]
    assert lines[0].startswith(f"sentry-sdk: {latest.version} now highest of")
    assert lines[2] == f"stacks: 1 new, 1 dropped, {len(plan.stacks) - 1} as before"
    assert lines[3].startswith(f"stack {new.stacks[0].id}: new (")
    assert lines[4].startswith(f"stack {plan.stacks[0].id}: dropped (")
    assert len(lines) == 5


def test_summary_names_every_axis_and_flags_long_ones(plan: Plan) -> None:
    text = summary(plan)
    for name, axis in plan.axes.items():
        head = next(line for line in text.splitlines() if line.startswith(name))
        assert f"{len(axis.values)} picks" in head
        assert ("more than the" in head) == (len(axis.values) > TOO_MANY), head
    assert f"{plan.size.pairs_covered} of {plan.size.pairs} installable pairs" in text
