"""A rule on two packages, bisected on both axes.

``[tool.history.<rule>]`` of pyproject.toml names two packages under ``axes``.  Each
axis is searched as one package is (tests/harness/history.py: ends, bisection, spread,
both neighbours of each flip in full) twice: with the other axis at the first and at
the last usable release of its range.  Where a boundary lies on one axis only at one
end of the other, the rule needs both: the data (tests/data/history/<rule>.json,
records.HistoryRule) holds the four searches, and the thresholds each must find: an
axis's own at the other's last release, none at its first.

tests/harness/history_lock.py calls ``search`` (--full, --update) and ``reprove``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import builds, history, records
from .bisect import Flip
from .cells import HISTORY, HISTORY_DATA
from .paths import ROOT
from .records import HistoryPackage, HistoryRule, SchemaError, history_update


def axes(rule: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = HISTORY[rule]["axes"]
    if len(found) != 2:
        raise ValueError(f"[tool.history.{rule}.axes] names {sorted(found)}: expected two packages")
    return found


def settings(rule: str, package: str) -> dict[str, Any]:
    """The rule's settings with the axis's own (range, request-path, thresholds)."""
    own = {k: v for k, v in HISTORY[rule].items() if k not in ("axes", "thresholds")}
    return {**own, **axes(rule)[package]}


def ends(
    rule: str,
    package: str,
    python_version: str,
) -> tuple[list[str], history.Files]:
    """(the first and the last release of the axis's range, the registry's files)."""
    files = builds.registry_releases(package)
    releases, unusable = history.release_range(
        package, settings(rule, package), files, python_version
    )
    usable = [r for r in releases if r not in unusable]
    return [usable[0], usable[-1]], files


def expected(
    rule: str,
    package: str,
    other: str,
    at: str,
    other_ends: list[str],
) -> dict[str, str]:
    """The thresholds a search must find: the axis's own at the other's last release."""
    return dict(axes(rule)[package].get("thresholds", {})) if at == other_ends[-1] else {}


def plan(
    rule: str,
    python_version: str,
) -> list[tuple[str, str, str, list[str], history.Files]]:
    """(axis, other axis, its release, its ends, its files) of each search, in order."""
    first, second = axes(rule)
    found = {p: ends(rule, p, python_version) for p in (first, second)}
    return [
        (axis, other, at, found[other][0], found[other][1])
        for axis, other in ((first, second), (second, first))
        for at in found[other][0]
    ]


def key(axis: str, other: str, at: str) -> str:
    return f"{axis} at {other}=={at}"


def search(rule: str, python: str | Path, work: Path, cache: Path | None, out: Path) -> HistoryRule:
    """The four searches, into <out>/history.{json,md} (each under its key) and a record."""
    started = time.monotonic()
    python_version = history.python_version_of(python)
    found: list[HistoryPackage] = []
    for axis, other, at, other_ends, files in plan(rule, python_version):
        entry = {**settings(rule, axis), "thresholds": expected(rule, axis, other, at, other_ends)}
        found.append(
            history.run(
                axis,
                python,
                work,
                cache,
                out,
                entry=entry,
                at={other: {at: files[at]}},
                key=key(axis, other, at),
            )
        )
    failed = any(s.status != "passed" for s in found)
    return HistoryRule(
        rule=rule,
        searches=found,
        status="failed" if failed else "passed",
        wall_time=round(time.monotonic() - started, 1),
    )


def data_path(rule: str, data_dir: Path = HISTORY_DATA) -> Path:
    return data_dir / f"{rule}.json"


def read_data(rule: str, data_dir: Path = HISTORY_DATA) -> HistoryRule:
    path = data_path(rule, data_dir)
    if not path.is_file():
        raise SchemaError(
            f"{path.relative_to(ROOT)}: no committed history of {rule}: run {history_update(rule)}"
        )
    return records.read(path, HistoryRule, history_update(rule))


def thresholds(rule: str, data: HistoryRule) -> list[str]:
    """Problems, if the committed flips are not the thresholds each search must find (the
    other axis's ends as its own searches found them: no registry needed)."""
    problems: list[str] = []
    ranges = {s.package: [s.range.low or "", s.range.high or ""] for s in data.searches}
    if sorted(ranges) != sorted(axes(rule)) or len(data.searches) != 4:
        return [
            f"{rule}: the data holds searches of {sorted(ranges)} ({len(data.searches)}), "
            f"not two of each of {sorted(axes(rule))}: run {history_update(rule)}"
        ]
    for found in data.searches:
        ((other, at),) = found.at.items()
        want = expected(rule, found.package, other, at, ranges[other])
        flips: list[Flip[str]] = [
            Flip(f.before, f.after, f.skipped_between, {}) for f in found.flips
        ]
        problems += [
            f"{key(found.package, other, at)}: {p}"
            for p in history.check_thresholds(found.package, want, flips)
        ]
        if found.thresholds != want:
            problems.append(
                f"{key(found.package, other, at)}: the data was written for "
                f"thresholds {found.thresholds}, pyproject.toml now says {want}: "
                f"run {history_update(rule)}"
            )
    return problems


def table(data: HistoryRule) -> str:
    """Where each boundary lies, one line per search."""
    lines = [f"rule {data.rule}: each axis searched at both ends of the other"]
    for found in data.searches:
        ((other, at),) = found.at.items()
        flips = (
            ", ".join(f"{f.before} -> {f.after} ({len(f.changed)} cells)" for f in found.flips)
            or "no flip"
        )
        lines.append(
            f"  {found.package} {found.range.low} .. {found.range.high} at {other}=={at}: {flips}"
        )
    return "\n".join(lines)
