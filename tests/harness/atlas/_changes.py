"""What a refresh brings: the plan's stacks that hold a pick the previous plan did not
have (what the weekly run reruns), and, once they ran, each cell whose observation with
the new release differs from the model's prediction with the release it displaced, with
the model's cause and the run that proved its rule (the user's "what does taking this
release change?", answered per new release)."""

from __future__ import annotations

import json
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from ..userstack._predict import model_versions
from ..userstack._request import from_args
from ..userstack._upgrade import cause_of, changes, observed, predicted, proof_of
from ._axes import PYTHON
from ._plan import Pick, Plan, PlanStack

OUTCOME = "outcome.json"
RAN = "ran"


def new_picks(old: Plan, new: Plan) -> dict[str, list[str]]:
    """{axis: the picks ``new`` has and ``old`` had not}, axes without one left out."""
    found = {}
    for name, axis in new.axes.items():
        had = {p.version for p in old.axes[name].values} if name in old.axes else set()
        if added := [p.version for p in axis.values if p.version not in had]:
            found[name] = added
    return found


def with_new_picks(old: Plan, new: Plan) -> list[PlanStack]:
    """The stacks of ``new`` that hold one of its new picks, in the plan's order."""
    added = new_picks(old, new)
    return [s for s in new.stacks if any(s.values.get(a) in vs for a, vs in added.items())]


def displaced(old: Plan, axis: str, version: str) -> Pick | None:
    """The pick of ``old`` that ``version`` follows on its axis: the highest below it,
    as a user's upgrade would move (None: the new pick is the axis's oldest)."""
    had = old.axes[axis].values if axis in old.axes else []  # a new axis displaces nothing
    below = [p for p in had if _key(p.version) < _key(version)]
    return max(below, key=lambda p: _key(p.version)) if below else None


def moved_pins(pins: dict[str, str], axis: str, plan: Plan, pick: Pick) -> dict[str, str]:
    """``pins`` with ``axis`` at ``pick`` (and the release it is paired with)."""
    package, _, release = pick.version.rpartition("==")  # a handler's "flask-sock==0.7.0"
    out = _pin(pins, package or plan.axes[axis].package or axis, release)
    paired = plan.axes[axis].paired
    return _pin(out, paired, pick.paired.version) if paired and pick.paired else out


def _key(version: str) -> Version:
    return Version(version.rpartition("==")[2])  # a handler's pick: "flask-sock==0.7.0"


def _pin(pins: dict[str, str], package: str, version: str) -> dict[str, str]:
    """``pins`` with ``package`` at ``version`` (the plan spells names its own way)."""
    name = next((n for n in pins if canonicalize_name(n) == canonicalize_name(package)), package)
    return {**pins, name: version}


def flips(old: Plan, new: Plan, root: Path) -> list[str]:
    """For each stack with a new pick that ran under ``root``: one line per cell column
    whose observation differs from the model's prediction at the displaced pick."""
    added = new_picks(old, new)
    lines = []
    for stack in with_new_picks(old, new):
        if not _ran(root / stack.id / OUTCOME):
            continue
        docs = {
            p.name: json.loads(p.read_text())
            for p in sorted((root / stack.id).glob("stack-*.json"))
        }
        after, _ = model_versions(from_args([f"{n}=={v}" for n, v in stack.pins.items()], None))
        seen = observed(docs)
        for axis, versions in added.items():
            pick = stack.values.get(axis)
            if pick not in versions or axis == PYTHON:  # a Python is no pin to move
                continue
            was = displaced(old, axis, pick)
            if was is None:
                lines.append(f"{stack.id}: {axis} {pick} is the axis's oldest pick now")
                continue
            before_request = from_args(
                [f"{n}=={v}" for n, v in moved_pins(stack.pins, axis, old, was).items()], None
            )
            before, _ = model_versions(before_request)
            for change in changes(predicted(before, before_request.served_layers()), seen):
                way = {-1: "worse", 1: "better"}.get(change.direction, "neither")
                lines.append(
                    f"{stack.id}: {axis} {was.version} -> {pick}: {change.cell.label()} "
                    f"{change.column} {change.before} -> {change.after} ({way}): "
                    f"{cause_of(change, after, before)} [{proof_of(change, before, after)}]"
                )
    return lines


def summary(old: Plan, new: Plan, root: Path) -> str:
    """The refresh for a job summary: new picks, the stacks they bring, what flipped."""
    added = new_picks(old, new)
    lines = ["## What the new releases change", ""]
    if not added:
        return "\n".join([*lines, "No new release since the previous plan."]) + "\n"
    lines += [f"- {axis}: new {', '.join(vs)}" for axis, vs in added.items()]
    stacks = with_new_picks(old, new)
    ran = [s.id for s in stacks if _ran(root / s.id / OUTCOME)]
    lines += ["", f"{len(stacks)} stacks hold a new pick; {len(ran)} ran: {', '.join(ran) or '-'}"]
    found = flips(old, new, root)
    lines += ["", *(f"- {line}" for line in found)] if found else ["", "No cell flips."]
    return "\n".join(lines) + "\n"


def _ran(outcome: Path) -> bool:
    return outcome.is_file() and json.loads(outcome.read_text()).get("status") == RAN
