"""``python -m tests.harness.history_lock --package newrelic``: history's committed data,
re-proven (the idea of a lock file).

What ``nox -s "history(<package>)"`` proved is committed as
``tests/data/history/<package>.json`` (records.HistoryPackage); the report cites it.
By default the session re-proves it, in about a minute: the registry's releases in
the range and their sdists' sha256 are still those recorded, and all cells, run again
at the range's ends and at both neighbours of every flip, give the recorded verdicts
(so each flip still lies exactly there, and the cells agree with the model).  Any
difference fails the session, printed as a diff of those facts.

    --full     the whole search (tests/harness/history.py: bisection, spread check,
               proof, diff) into report/history.{json,md}, compared with the data
    --update   the whole search, its result written as the data (when it passed)

Exit status: 0 proven, 1 a difference or a problem, 2 the search could not run.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.version import Version

from . import builds, history, history_axes, records
from .bisect import Flip, Unusable
from .cells import HISTORY, HISTORY_DATA, Cell
from .paths import REPORT, ROOT
from .records import HistoryPackage, SchemaError, history_update

Verdicts = dict[str, dict[str, str]]  # release -> cell label -> verdict


def data_path(package: str, data_dir: Path = HISTORY_DATA) -> Path:
    return data_dir / f"{package}.json"


def read_data(package: str, data_dir: Path = HISTORY_DATA) -> HistoryPackage:
    """The committed history of ``package``; SchemaError (one line, with the fix) if
    it is missing or unreadable."""
    path = data_path(package, data_dir)
    if not path.is_file():
        raise SchemaError(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
            f"no committed history of {package}: run {history_update(package)}"
        )
    return records.read(path, HistoryPackage, history_update(package))


def write_data(package: HistoryPackage, data_dir: Path = HISTORY_DATA) -> Path:
    path = data_path(package.package, data_dir)
    records.write(path, package)
    return path


# -- the facts a history rests on, as lines a diff can show --------------------------------


def evidence(package: HistoryPackage) -> list[str]:
    """The releases a re-proof runs all cells at: the range's ends, each flip's neighbours."""
    wanted = {r for r in (package.range.low, package.range.high) if r}
    wanted |= {r for flip in package.flips for r in (flip.before, flip.after)}
    return sorted(wanted, key=Version)


def facts(
    package: HistoryPackage, verdicts: Verdicts, sha256: Mapping[str, str | None]
) -> list[str]:
    """One line per fact: what the search ran on, the range, each flip, and each verdict
    and sdist sha256 at the releases of ``evidence``; cells by their short label."""
    lines = [
        f"stack {package.stack}, CPython {package.python}, agent {package.agent}"
        + "".join(f", at {p}=={r}" for p, r in package.at.items()),
        f"range {package.range.low} .. {package.range.high} (usable ends)",
    ]
    lines += [f"in range: {r}" for r in package.range.releases]
    for flip in package.flips:
        changed = "; ".join(
            f"{history.short(c)}: {a} -> {b}" for c, (a, b) in sorted(flip.changed.items())
        )
        lines.append(f"flip {flip.before} -> {flip.after}: {changed or 'no cell changed'}")
    for release in evidence(package):
        lines.append(f"{release} sdist sha256 {sha256.get(release)}")
        by_cell = verdicts.get(release)
        if by_cell is None:
            lines.append(f"{release} not run")
            continue
        lines += [f"{release} {history.short(c)}: {v}" for c, v in sorted(by_cell.items())]
    return lines


def recorded(package: HistoryPackage) -> tuple[Verdicts, dict[str, str | None]]:
    """The verdicts and sdist sha256s the data holds for its releases."""
    verdicts = {p.release: dict(p.verdicts) for p in package.probed}
    sha256 = {p.release: release_sha256(p.build) for p in package.probed}
    return verdicts, sha256


def difference(
    committed: HistoryPackage,
    found: HistoryPackage,
    verdicts: Verdicts,
    sha256: Mapping[str, str | None],
    where: str,
) -> str:
    """A unified diff of the facts (empty: the same)."""
    before = facts(committed, *recorded(committed))
    after = facts(found, verdicts, sha256)
    return "".join(
        difflib.unified_diff(
            [f"{line}\n" for line in before],
            [f"{line}\n" for line in after],
            f"{data_path(committed.package).relative_to(ROOT)} (committed)",
            where,
            n=1,
        )
    )


def thresholds(package: HistoryPackage) -> list[str]:
    """Problems, if the committed flips are not pyproject.toml's thresholds."""
    flips: list[Flip[str]] = [Flip(f.before, f.after, f.skipped_between, {}) for f in package.flips]
    return history.check_thresholds(
        package.package, HISTORY[package.package].get("thresholds", {}), flips
    )


# -- the re-proof ------------------------------------------------------------------------


def reprove(package: str, python: str | Path, work: Path, cache: Path | None) -> list[str]:
    """Problems (a diff among them) if the committed history no longer holds."""
    if "axes" in HISTORY[package]:
        return reprove_rule(package, python, work, cache)
    try:
        data = read_data(package)
    except SchemaError as exc:
        return [str(exc)]
    problems = thresholds(data)
    return problems + reprove_search(data, HISTORY[package], python, work, cache)


def reprove_rule(rule: str, python: str | Path, work: Path, cache: Path | None) -> list[str]:
    """Each of a rule's searches re-proven at its ends and its flips' neighbours."""
    try:
        data = history_axes.read_data(rule)
    except SchemaError as exc:
        return [str(exc)]
    problems = history_axes.thresholds(rule, data)
    for found in data.searches:
        ((other, at),) = found.at.items()
        files = builds.registry_releases(other)
        problems += reprove_search(
            found,
            history_axes.settings(rule, found.package),
            python,
            work,
            cache,
            {other: {at: files[at]}},
            rule,
        )
    print(history_axes.table(data))
    return problems


def reprove_search(
    data: HistoryPackage,
    entry: history.Entry,
    python: str | Path,
    work: Path,
    cache: Path | None,
    at: dict[str, history.Files] | None = None,
    rule: str | None = None,
) -> list[str]:
    """Problems if one committed search (a package's, or a rule's axis at ``at``) no
    longer holds: all cells again at its range's ends and its flips' neighbours."""
    package = data.package
    update = history_update(rule or package)
    problems = (
        [f"{package}: the committed history did not pass ({data.problems}): run {update}"]
        if data.status != "passed"
        else []
    )
    files = builds.registry_releases(package)
    python_version = history.python_version_of(python)
    releases, _ = history.release_range(package, entry, files, python_version)
    lab = history.Lab(package, entry, python, work, cache, files, at=at)
    targets = evidence(data)
    observed: Verdicts = {}
    sha256: dict[str, str | None] = {}

    def probe(release: str) -> None:
        try:
            # Each of these served every cell when the data was written.
            got = lab.probe(release, lab.cells(), known_to_serve=True)
        except Unusable as exc:
            problems.append(f"{package} {release} could not be run again: {exc}")
            return
        observed[release] = {c.label(): v for c, v in got.items()}
        sha256[release] = release_sha256(lab.builds[release])

    with ThreadPoolExecutor(history.PARALLEL_PROBES) as pool:
        list(pool.map(probe, [r for r in targets if r in files]))
    problems += [f"{package} {r}: no longer on the registry" for r in targets if r not in files]
    found = records.from_dict(
        HistoryPackage,
        {
            **records.to_dict(data),
            "python": python_version,
            "stack": entry["stack"],
            "agent": lab.agents,
            "range": {**records.to_dict(data.range), "releases": releases},
            "flips": [
                {
                    **records.to_dict(f),
                    "changed": {
                        c: [
                            observed.get(f.before, {}).get(c, "?"),
                            observed.get(f.after, {}).get(c, "?"),
                        ]
                        for c in data.watched
                        if observed.get(f.before, {}).get(c) != observed.get(f.after, {}).get(c)
                    },
                }
                for f in data.flips
            ],
        },
    )
    diff = difference(data, found, observed, sha256, "this run")
    if diff:
        problems.append(
            f"{package}: the history differs from the committed data "
            f"(if this is upstream's change, rewrite it: {update}):\n{diff}"
        )
    problems += lab.model_disagreements
    where = "".join(f" at {p}=={r}" for p, r in lab.at.items())
    print(table(package + where, observed, recorded(data)[0]))
    return problems


def release_sha256(build: dict[str, Any] | None) -> str | None:
    """What the registry's sha256 says of a release: its sdist's, or (a rule's axis,
    installed as uv resolved it) the files its resolution admitted."""
    build = build or {}
    found = build.get("sdist_sha256") or build.get("sha256")
    return " ".join(found) if isinstance(found, list) else found


def table(package: str, observed: Verdicts, committed: Verdicts) -> str:
    """The re-proof as the terminal shows it: a release per row, a cell per column (short
    labels), ``+`` / ``-`` as run now, ``!`` where the data says otherwise."""
    labels = sorted({c for v in observed.values() for c in v}, key=Cell.parse, reverse=True)
    lines = [
        f"history of {package}, re-proven: all cells at the range's ends and at both "
        "neighbours of each flip (! differs from the committed data)",
        "",
    ]
    width = max([len(r) for r in observed] + [len("release")])
    # a column as wide as its widest verdict ("+", or a layer's "- held")
    mark = max([len(v) for by_cell in observed.values() for v in by_cell.values()] + [1])
    for i, label in enumerate(labels):
        lines.append(f"{'':{width}}  {('|' + ' ' * (mark + 1)) * i}{history.short(label)}")
    lines.append(f"{'release':{width}}  " + ("|" + " " * (mark + 1)) * len(labels))
    for release in sorted(observed, key=Version):
        marks = [
            f"{observed[release].get(c, ' '):{mark}}"
            + ("!" if committed.get(release, {}).get(c) != observed[release].get(c) else " ")
            for c in labels
        ]
        lines.append(f"{release:{width}}  " + " ".join(marks))
    return "\n".join(lines)


# -- the whole search ------------------------------------------------------------------


def search(
    package: str, python: str | Path, work: Path, cache: Path | None, out: Path, update: bool
) -> list[str]:
    """The whole search (report/history.{json,md}); compared with the data, or written
    as the data (``update``, if it passed)."""
    found = history.run(package, python, work, cache, out)
    print((out / "history.md").read_text())
    problems = list(found.problems)
    if update:
        if problems:
            return [*problems, f"{package}: the data is not rewritten: the search did not pass"]
        print(f"wrote {write_data(found).relative_to(ROOT)}: commit it")
        return []
    try:
        data = read_data(package)
    except SchemaError as exc:
        return [*problems, str(exc)]
    verdicts, sha256 = recorded(found)
    diff = difference(data, found, verdicts, sha256, "this search")
    if diff:
        problems.append(
            f"{package}: the search differs from the committed data (if this is "
            f"upstream's change, rewrite it: {history_update(package)}):\n{diff}"
        )
    return problems


def search_rule(
    rule: str, python: str | Path, work: Path, cache: Path | None, out: Path, update: bool
) -> list[str]:
    """A rule's four searches; written as its data (``update``, if all passed)."""
    found = history_axes.search(rule, python, work, cache, out)
    print((out / "history.md").read_text())
    print(history_axes.table(found))
    problems = [p for s in found.searches for p in s.problems]
    if update and not problems:
        path = history_axes.data_path(rule)
        records.write(path, found)
        print(f"wrote {path.relative_to(ROOT)}: commit it")
    elif update:
        problems.append(f"{rule}: the data is not rewritten: a search did not pass")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.history_lock", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--package", required=True, choices=sorted(HISTORY))
    parser.add_argument(
        "--python",
        required=True,
        help="the server's interpreter: an env with the stack's other pins",
    )
    parser.add_argument("--work", required=True, type=Path, help="installs, runs and logs")
    parser.add_argument("--cache", type=Path, default=None, help="sdists and wheels (.cache)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPORT,
        help="where --full and --update write history.json and history.md",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--full", action="store_true", help="the whole search, compared with the committed data"
    )
    mode.add_argument(
        "--update",
        action="store_true",
        help="the whole search, written as the committed data if it passed",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        if (args.full or args.update) and "axes" in HISTORY[args.package]:
            problems = search_rule(
                args.package, args.python, args.work, args.cache, args.out, args.update
            )
        elif args.full or args.update:
            problems = search(
                args.package, args.python, args.work, args.cache, args.out, args.update
            )
        else:
            problems = reprove(args.package, args.python, args.work, args.cache)
    except builds.BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"\n{'full search' if args.full or args.update else 're-proof'} of {args.package}: "
        f"{time.monotonic() - started:.1f} s (load before: {load})"
    )
    print_problems(problems)
    return 1 if problems else 0


def print_problems(problems: Iterable[str]) -> None:
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
