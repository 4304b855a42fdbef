"""The whole history search: which release of a package changed a cell.

For one package of pyproject.toml's ``[tool.history]``: every release in its
range (the registry's own list), each built once from its sdist (sha256 from
the registry's metadata, tests/harness/builds.py) and installed into a
directory of its own that goes first on the server's PYTHONPATH; the cells are
those of the matrix (tests/matrix/test_cells.py, run by pytest with ``--release``, so
its positive controls expect that release), their verdicts read from the
results file.  tests/harness/bisect.py decides which releases to probe.

``run`` writes ``<out>/history.json`` (this package's entry, others kept) and
``<out>/history.md``; a flip that is not the model's threshold (or a cell that
disagrees with the model) is a problem.  ``nox -s "history(<package>)" -- --full``
runs it (tests/harness/history_lock.py, which also commits and re-proves the result).
"""

from __future__ import annotations

import datetime
import difflib
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from . import builds, records
from .bisect import SPREAD, Flip, Search, Unusable
from .cells import BOOLS, HISTORY, LAYER_COLUMN_AXES, Cell, layer_cells, node_id
from .cells_pytest import LAYERS_PATH, CellsRun, child_command
from .paths import ROOT
from .records import (
    HistoryPackage,
    HistoryResults,
    SchemaError,
    SessionResults,
    comparable,
    history_rerun,
)

PYTEST_TIMEOUT = 600  # s for one pytest run of at most 8 cells (each bounded on its own)
INSTALL_TIMEOUT = 300
# What every cell of a search shares, left out of its labels in history.md.
KNOWN = ("stack", "fixed")
PARALLEL_PROBES = 2
DIFF_LINES = 60  # per function: a diff is evidence for a ticket, not the whole file
PYTHON_VERSION = "import platform, sys; sys.stdout.write(platform.python_version())"
LAYERS_TEST = f"{LAYERS_PATH}::test_layer_cell"
HELD = " held"  # a layer cell's verdict, when the server kept the TCP connection open
# A release of a rule's axis is installed with what its metadata required when it was
# uploaded (uv's --exclude-newer): gevent's wheels need the greenlet ABI of their day.
# Days after the upload, for the wheels a project uploads after its sdist.
UPLOAD_GRACE = datetime.timedelta(days=2)
# The registry's files per release (builds.registry_releases); [tool.history.<package>].
Files = dict[str, list[dict[str, Any]]]
Entry = dict[str, Any]


def short(label: str) -> str:
    """A cell of history.json as history.md names it: ``agent rum ¬hello_goodbyer streaming``."""
    return Cell.parse(label).label(omit=KNOWN)


def _shorten(doc: dict[str, Any]) -> dict[str, Any]:
    """A package's entry with every cell label short (history.md's tables and lists)."""

    def cells(by_label: dict[str, Any]) -> dict[str, Any]:
        return {short(k): v for k, v in by_label.items()}

    return {
        **doc,
        "watched": [short(c) for c in doc["watched"]],
        "probed": [{**p, "verdicts": cells(p["verdicts"])} for p in doc["probed"]],
        "flips": [
            {
                **f,
                "changed": cells(f["changed"]),
                "proof": {r: cells(v) for r, v in f["proof"].items()},
            }
            for f in doc["flips"]
        ],
    }


# -- the range -------------------------------------------------------------------------


def release_range(
    package: str,
    entry: Entry,
    files: Files,
    python_version: str,
) -> tuple[list[str], dict[str, str]]:
    """(releases in the range, oldest first; {release: why it cannot be probed}).

    The range runs from ``first`` (default: the registry's first release) to
    ``last`` (default: the last release whose Requires-Python admits the stack's
    interpreter).  A release without an sdist stays in the range, skipped.
    """

    def version(v: str) -> Version | None:
        try:
            return Version(v)
        except InvalidVersion:
            return None

    known = sorted((v for v in files if version(v) is not None), key=Version)
    first = Version(entry.get("first", known[0]))
    last = entry.get("last")
    releases: list[str] = []
    unusable: dict[str, str] = {}
    for v in known:
        if Version(v) < first or (last and Version(v) > Version(last)):
            continue
        requires = {f.get("requires_python") for f in files[v]} - {None, ""}
        if not last and any(
            python_version not in SpecifierSet(r)  # type: ignore[arg-type]  # no None: subtracted
            for r in requires
        ):
            continue  # beyond what the stack's Python can install: outside the range
        releases.append(v)
        if "python" in entry:  # a rule's axis: installed as uv resolves it (wheels too)
            if not files[v]:
                unusable[v] = "the registry has no files of it"
            continue
        sdists = [f for f in files[v] if f["packagetype"] == "sdist"]
        if not sdists:
            unusable[v] = "the registry has no sdist of it" + (
                f" (only {len(files[v])} wheels)" if files[v] else " (no files at all)"
            )
        elif all(f.get("yanked") for f in sdists):
            unusable[v] = f"yanked: {sdists[0].get('yanked_reason') or 'no reason given'}"
    return releases, unusable


def python_version_of(python: str | Path) -> str:
    """The server interpreter's version, e.g. 2.7.18."""
    return subprocess.run(
        [str(python), "-c", PYTHON_VERSION], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


# -- the probe: the matrix's cells at one release ---------------------------------------


class Lab:
    """Builds, installs and runs the cells at a release of ``package`` on ``python``."""

    def __init__(
        self,
        package: str,
        entry: Entry,
        python: str | Path,
        work: str | Path,
        cache: Path | None,
        files: Files,
        at: dict[str, Files] | None = None,
    ) -> None:
        self.package, self.entry, self.python = package, entry, str(python)
        # a rule's other axes, each at one release (tests/harness/history_axes.py), and
        # the registry's files of that release: {package: {release: files}}
        self.other_files: dict[str, Files] = dict(at or {})
        self.at = {p: next(iter(r)) for p, r in self.other_files.items()}
        self.work, self.cache, self.files = Path(work), cache, files
        self.stack = entry["stack"]
        self.agents = entry.get("agent", list(BOOLS))
        self.installed: dict[str, list[Path]] = {}  # release -> directories for PYTHONPATH
        self.started: set[str] = set()  # releases that have served a cell
        self.builds: dict[str, dict[str, Any]] = {}  # release -> {"seconds": .., "wheel": ..}
        self.runs: list[dict[str, Any]] = []  # one record per pytest run
        self.run_ids = itertools.count()  # probes run side by side: each its own directory
        self.model_disagreements: list[str] = []
        self.notes: list[str] = []  # criteria beside the verdict that differ from the model
        # Probes run side by side and share the other axes' installs: one writer per target
        # (two once removed each other's half-written tree).
        self.install_locks: dict[Path, threading.Lock] = {}
        self.install_locks_guard = threading.Lock()

    def cells(self) -> list[Cell]:
        # the vanilla build: the release under test is the only change
        layer = self.entry.get("layer")
        if layer:
            return [c for c in layer_cells(self.stack, False, layer) if c.layer == layer]
        return [
            Cell(self.stack, a, False, r, h, s)
            for a in self.agents
            for r in BOOLS
            for h in BOOLS
            for s in BOOLS
        ]

    def install(self, release: str) -> list[Path]:
        """The directories to put first on the server's PYTHONPATH for ``release``."""
        if release in self.installed:
            return self.installed[release]
        if "python" in self.entry:
            self.installed[release] = [
                self.install_resolved(self.package, release, self.files[release])
            ]
            return self.installed[release]
        files = self.files[release]
        sdists = [f for f in files if f["packagetype"] == "sdist"]
        started = time.monotonic()
        try:
            sha = sdists[0]["digests"]["sha256"] if len(sdists) == 1 else None
            if sha is None:
                raise builds.BuildError(
                    f"expected one sdist on the registry, found {[f['filename'] for f in sdists]}"
                )
            sdist = builds.fetch_verified_sdist(
                self.package,
                release,
                sha,
                cache=self.cache,
                download=builds.registry_download(files),
            )
            wheel = builds.build_release_wheel(
                self.package, release, sdist, sha, self.python, cache=self.cache
            )
        except builds.BuildError as exc:
            raise Unusable(
                f"download or build failed: {' '.join(str(exc).split())[:600]}"
            ) from None
        self.builds[release] = {
            "seconds": round(time.monotonic() - started, 2),
            "wheel": wheel.name,
            "sdist_sha256": sha,
        }
        target = self.work / "installed" / wheel.parent.name
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            try:
                proc = subprocess.run(
                    [
                        self.python,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--no-deps",
                        "--no-index",
                        "--disable-pip-version-check",
                        "--target",
                        str(target),
                        str(wheel),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise Unusable(
                    f"pip install --target timed out after {INSTALL_TIMEOUT} s"
                ) from None
            if proc.returncode != 0:
                raise Unusable("install failed: " + " | ".join(proc.stderr.splitlines()[-5:]))
            (target / ".complete").write_text(wheel.name + "\n")
        # newrelic 2.x installs into a subdirectory named by a .pth file (setup.py's
        # extra_path), which only site directories honour: PYTHONPATH needs both.
        paths = [target] + [
            target / line.strip()
            for pth in sorted(target.glob("*.pth"))
            for line in pth.read_text().splitlines()
            if line.strip() and not line.startswith(("import", "#"))
        ]
        self.installed[release] = paths
        return paths

    def install_resolved(
        self,
        package: str,
        release: str,
        files: list[dict[str, Any]],
    ) -> Path:
        """``package==release`` and what it required at its upload, resolved by uv for the
        server's Python at that date, every file verified against the registry's sha256
        (--require-hashes), into a directory of its own (a rule's release, on Python 3)."""
        uploaded = max(
            datetime.datetime.fromisoformat(f["upload_time_iso_8601"].replace("Z", "+00:00"))
            for f in files
        )
        target = self.work / "installed" / f"{package}-{release}-py{self.python_tag()}"
        with self.install_locks_guard:
            lock = self.install_locks.setdefault(target, threading.Lock())
        with lock:
            return self._install_resolved(package, release, uploaded, target)

    def _install_resolved(
        self, package: str, release: str, uploaded: datetime.datetime, target: Path
    ) -> Path:
        pins = target.with_name(target.name + ".txt")
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            uv = shutil.which("uv") or "uv"
            date = (uploaded + UPLOAD_GRACE).strftime("%Y-%m-%dT%H:%M:%SZ")
            started = time.monotonic()
            for cmd in (
                [
                    uv,
                    "pip",
                    "compile",
                    "--quiet",
                    "--generate-hashes",
                    "--python",
                    self.python,
                    "--exclude-newer",
                    date,
                    "--no-header",
                    "-o",
                    str(pins),
                    "-",
                ],
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--require-hashes",
                    "--python",
                    self.python,
                    "--target",
                    str(target),
                    "--compile-bytecode",
                    "-r",
                    str(pins),
                ],
            ):
                try:
                    proc = subprocess.run(
                        cmd,
                        input=f"{package}=={release}\n",
                        capture_output=True,
                        text=True,
                        timeout=INSTALL_TIMEOUT,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    raise Unusable(f"{cmd[1:3]} timed out after {INSTALL_TIMEOUT} s") from None
                if proc.returncode != 0:
                    raise Unusable(
                        f"uv {' '.join(cmd[1:3])} failed: "
                        + " | ".join(proc.stderr.strip().splitlines()[-5:])
                    )
            (target / ".complete").write_text(pins.read_text())
            if package == self.package:
                self.builds[release] = {"seconds": round(time.monotonic() - started, 2)}
        if package != self.package:
            return target
        # the release's own hashes, as the resolution pinned them (the registry's sha256)
        lines = (target / ".complete").read_text().splitlines()
        start = next(
            i for i, ln in enumerate(lines) if ln.lower().startswith(f"{package.lower()}==")
        )
        hashes = []
        for ln in lines[start + 1 :]:
            if not ln.startswith(" "):
                break
            hashes += re.findall(r"--hash=sha256:([0-9a-f]{64})", ln)
        self.builds.setdefault(release, {})["sha256"] = sorted(hashes)
        self.builds[release]["requirements"] = [ln for ln in lines if ln and ln[0].isalnum()]
        return target

    def python_tag(self) -> str:
        return "".join(str(self.entry["python"]).split("."))

    def probe(
        self,
        release: str,
        cells: list[Cell],
        known_to_serve: bool = False,
    ) -> dict[Cell, str]:
        paths = self.install(release)
        verdicts: dict[Cell, str] = {}
        if release not in self.started and len(cells) > 1 and not known_to_serve:
            # A release that cannot serve fails its first cell: learn that from one
            # cell, not from all of them (the range's ends walk over such releases).
            verdicts.update(self.run_cells(release, paths, cells[0].agent, cells[:1]))
            cells = cells[1:]
        self.started.add(release)
        by_agent: dict[bool, list[Cell]] = {}
        for cell in cells:
            by_agent.setdefault(cell.agent, []).append(cell)
        with ThreadPoolExecutor(len(by_agent)) as pool:
            parts = list(
                pool.map(lambda item: self.run_cells(release, paths, *item), by_agent.items())
            )
        return verdicts | {cell: verdict for part in parts for cell, verdict in part.items()}

    def run_cells(
        self,
        release: str,
        paths: Sequence[Path],
        agent: bool,
        cells: Sequence[Cell],
    ) -> dict[Cell, str]:
        suffix = "".join(f"-{p}-{r}" for p, r in sorted(self.at.items()))
        out = self.work / "runs" / f"{release}{suffix}-agent-{agent}-{next(self.run_ids)}"
        shutil.rmtree(out, ignore_errors=True)
        results = out / "results.json"
        layer = self.entry.get("layer")
        nodes = [
            f"{LAYERS_TEST}[{c.slug(LAYER_COLUMN_AXES)}]" if layer else node_id(c) for c in cells
        ]
        others = [
            self.install_resolved(p, r, self.other_files[p][r]) for p, r in sorted(self.at.items())
        ]
        cmd = child_command(
            CellsRun(
                paths=nodes,
                stack=self.stack,
                agent=agent,
                fixed=False,
                server_python=self.python,
                results=results,
                logs=out / "logs",
                layer=layer,
                releases=[
                    f"{self.package}=={release}",
                    *(f"{p}=={r}" for p, r in sorted(self.at.items())),
                ],
            )
        )
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(p) for p in [*paths, *others]]
                + [p for p in [os.environ.get("PYTHONPATH")] if p]
            ),
        )
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=PYTEST_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # The servers read EOF on stdin once pytest is gone, and stop (app/lifeline.py).
            raise Unusable(f"pytest did not finish within {PYTEST_TIMEOUT} s (bound)") from None
        out.mkdir(parents=True, exist_ok=True)
        (out / "pytest.log").write_text(proc.stdout + proc.stderr)
        try:
            found = records.read(results, SessionResults, "this pytest run").cells
        except (OSError, SchemaError) as exc:
            raise Unusable(f"pytest wrote no results ({exc}): {self.summary(proc)}") from None
        observed = {r.cell: r for r in found}
        verdicts: dict[Cell, str] = {}
        for cell in cells:
            record = observed.get(cell)
            if record is None:
                raise Unusable(
                    f"cell {cell.label()} has no observation (the server did not "
                    f"start?): {self.summary(proc)}; server stderr: "
                    f"{self.tail(out / 'logs' / f'{cell.slug()}.stderr.log')}"
                )
            failed = [k for k, ok in record.controls.items() if not ok]
            if failed:
                raise Unusable(
                    f"positive controls failed in cell {cell.label()}: {failed} "
                    f"(the server reported {record.versions})"
                )
            clients = {o.client: o.verdict for o in record.observed}
            if len(set(clients.values())) > 1:
                # Seen on gevent-websocket 0.9/0.9.1 with the agent's lazy RUM: of two
                # concurrent websockets, the second one's view sometimes runs.
                raise Unusable(
                    f"the clients disagree in cell {cell.label()}: {clients}; "
                    "nondeterministic at this release, so it decides nothing "
                    f"(evidence: {out / 'results.json'})"
                )
            verdicts[cell] = record.verdict + (
                HELD if layer and record.outcome().server_closed_tcp is False else ""
            )
            # The cell's own assertion (tests/matrix/test_cells.py), every client: a verdict
            # that is not the model's is a problem (the thresholds decide verdicts); the
            # other criteria (close frame, ...) are noted, as the report's columns are.
            expected = comparable(record.expected)
            for obs in record.observed:
                seen = comparable(obs)
                if seen != expected:
                    # a layer's cells decide on TCP too: it is what the rule is about
                    decides = ("verdict", "server_closed_tcp") if layer else ("verdict",)
                    where = (
                        self.model_disagreements
                        if any(seen[k] != expected[k] for k in decides)
                        else self.notes
                    )
                    where.append(
                        f"{self.package} {release}, cell {cell.label()}, "
                        f"{obs.client} client: observed "
                        f"{ {k: v for k, v in seen.items() if v != expected[k]} }, "
                        f"the model expects "
                        f"{ {k: v for k, v in expected.items() if v != seen[k]} }"
                    )
        self.runs.append(
            {
                "release": release,
                "agent": agent,
                "cells": len(cells),
                "seconds": round(time.monotonic() - started, 2),
                "pytest_exit": proc.returncode,
                "log": os.path.relpath(out / "pytest.log", ROOT),
            }
        )
        return verdicts

    @staticmethod
    def summary(proc: subprocess.CompletedProcess[str]) -> str:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        text = " | ".join(lines[:2]) or " | ".join(proc.stdout.strip().splitlines()[-3:])
        return text[:500]

    @staticmethod
    def tail(path: Path, lines: int = 3) -> str:
        try:
            return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(none)"


# -- what changed in the code -----------------------------------------------------------


def extract(text: str, qualname: str) -> str | None:
    """The source of ``Class.method`` or ``function`` in ``text`` (by indentation: the
    sources may be Python 2), or None."""
    lines = text.split("\n")
    lo, hi, indent = 0, len(lines), -1
    for part in qualname.split("."):
        pattern = re.compile(r"^(\s*)(?:def|class)\s+" + re.escape(part) + r"\b")
        for i in range(lo, hi):
            m = pattern.match(lines[i])
            if m and len(m.group(1)) > indent:
                indent, j = len(m.group(1)), i + 1
                while j < hi and (
                    not lines[j].strip()
                    or len(lines[j]) - len(lines[j].lstrip()) > indent
                    or lines[j].lstrip().startswith(")")
                ):
                    j += 1
                while j > i + 1 and not lines[j - 1].strip():
                    j -= 1
                lo, hi = i, j
                break
        else:
            return None
    return "\n".join(lines[lo:hi]) + "\n"


def code_diff(
    package: str,
    entry: Entry,
    before: str,
    after: str,
    paths_before: Sequence[Path],
    paths_after: Sequence[Path],
) -> str:
    """Unified diffs of the request-path functions that differ between the two installs."""
    chunks: list[str] = []
    for spec in entry.get("request-path", []):
        path, _, qualname = spec.partition(":")
        texts: list[str | None] = []
        for paths in (paths_before, paths_after):
            found = [Path(p) / path for p in paths if (Path(p) / path).is_file()]
            texts.append(extract(found[0].read_text(errors="replace"), qualname) if found else None)
        if texts[0] == texts[1]:
            continue
        lines = list(
            difflib.unified_diff(
                (texts[0] or "").splitlines(keepends=True),
                (texts[1] or "").splitlines(keepends=True),
                f"{package}-{before}/{path}:{qualname}" + ("" if texts[0] else " (absent)"),
                f"{package}-{after}/{path}:{qualname}" + ("" if texts[1] else " (absent)"),
                n=3,
            )
        )
        if len(lines) > DIFF_LINES:
            lines = lines[:DIFF_LINES] + [f"... ({len(lines) - DIFF_LINES} more lines)\n"]
        chunks += lines
    if not chunks:
        return (
            f"none of the request-path functions of pyproject.toml's [tool.history.{package}] "
            "differ between the two releases"
        )
    return "".join(chunks)


# -- the model --------------------------------------------------------------------------


def check_thresholds(
    package: str, thresholds: dict[str, str], flips: Sequence[Flip[Any]]
) -> list[str]:
    """Problems, if the flips found are not the model's thresholds (pyproject.toml)."""
    expected = sorted(thresholds.items(), key=lambda item: Version(item[1]))
    where = f"pyproject.toml [tool.history.{package}] thresholds"
    if len(expected) != len(flips):
        return [
            f"{package}: history found {len(flips)} flip(s) "
            f"({', '.join(f'{f.before} -> {f.after}' for f in flips) or 'none'}) but {where} "
            f"has {len(expected)} ({', '.join(f'{n} = {v}' for n, v in expected) or 'none'})"
        ]
    problems: list[str] = []
    for (name, version), flip in zip(expected, flips, strict=True):
        if flip.skipped_between:
            problems.append(
                f"{package}: the flip lies between {flip.before} and {flip.after}, "
                f"and {flip.skipped_between} could not be probed: threshold {name} = "
                f"{version} cannot be proven"
            )
        elif Version(version) != Version(flip.after):
            problems.append(
                f"{package}: threshold {name} = {version} in {where}, but history "
                f"found the flip at {flip.after} (the last release before it is "
                f'{flip.before}): set {name} = "{flip.after}"'
            )
    return problems


def cite(history: HistoryResults | None, name: str, what: str) -> str:
    """'<what> since 2.68.0.50 (proven by `nox -s ...`)' or '<what> (not yet proven ...)':
    ``history``: what tests/data/history/ holds (None: nothing proven)."""
    package = next(p for p, e in HISTORY.items() if name in e.get("thresholds", {}))
    release = HISTORY[package]["thresholds"][name]
    if history is not None and history.proven(name, package, release):
        return f"{what} since {package} {release} (proven by {history_rerun(package)})"
    return f"{what} (the release that changed it is not yet proven by {history_rerun(package)})"


# -- the session ------------------------------------------------------------------------


def run(
    package: str,
    python: str | Path,
    work: str | Path,
    cache: Path | None,
    out: str | Path,
    *,
    entry: Entry | None = None,
    at: dict[str, Files] | None = None,
    key: str | None = None,
) -> HistoryPackage:
    """One package's search.  For an axis of a rule (tests/harness/history_axes.py):
    ``entry`` the rule's settings with the axis's, ``at`` the other axes' releases
    ({package: {release: files}}, one release each), ``key`` its name in history.json."""
    started = time.monotonic()
    load = [round(v, 2) for v in os.getloadavg()]
    entry = entry or HISTORY[package]
    files = builds.registry_releases(package)
    python_version = python_version_of(python)
    releases, unusable = release_range(package, entry, files, python_version)
    lab = Lab(package, entry, python, work, cache, files, at=at)
    problems: list[str] = []
    flips: list[Flip[Cell]] = []
    # Two probes side by side where they are independent (2 cores; each probe runs
    # its agent settings side by side too).
    with ThreadPoolExecutor(PARALLEL_PROBES) as pool:
        search = Search(
            releases, lab.probe, lab.cells(), pmap=pool.map, spread=entry.get("spread", SPREAD)
        )
        search.skipped.update(unusable)
        try:
            flips = search()
        except Unusable as exc:
            problems.append(f"{package}: {exc}")
        problems += search.unproven
    findings: list[dict[str, Any]] = []
    for flip in flips:
        findings.append(
            {
                "before": flip.before,
                "after": flip.after,
                "skipped_between": flip.skipped_between,
                "changed": {c.label(): list(v) for c, v in flip.changed.items()},
                "proof": {
                    r: {c.label(): v for c, v in search.results[r].items()}
                    for r in (flip.before, flip.after)
                },
                "diff": code_diff(
                    package,
                    entry,
                    flip.before,
                    flip.after,
                    lab.installed[flip.before],
                    lab.installed[flip.after],
                ),
            }
        )
    thresholds = entry.get("thresholds", {})
    if not problems:
        problems += check_thresholds(package, thresholds, flips)
    problems += lab.model_disagreements
    purposes: dict[str, list[str]] = {}
    for release, purpose, _ in search.log:
        purposes.setdefault(release, []).append(purpose)
    document: dict[str, Any] = {
        "package": package,
        "stack": entry["stack"],
        "python": python_version,
        "agent": lab.agents,
        "range": {
            "first": releases[0] if releases else None,
            "last": releases[-1] if releases else None,
            "low": search.low,
            "high": search.high,
            "releases": releases,
        },
        "watched": [c.label() for c in search.watched],
        "spread": search.spread,
        "probed": [
            {
                "release": r,
                "purposes": purposes[r],
                "verdicts": {c.label(): v for c, v in search.results.get(r, {}).items()},
                "build": lab.builds.get(r),
            }
            for r in releases
            if r in purposes
        ],
        "skipped": [
            {"release": r, "reason": search.skipped[r]} for r in releases if r in search.skipped
        ],
        "flips": findings,
        "thresholds": thresholds,
        "problems": problems,
        "status": "failed" if problems else "passed",
        "notes": lab.notes,
        "runs": lab.runs,
        "wall_time": round(time.monotonic() - started, 1),
        "load_before": load,
        "at": lab.at,
    }
    record = records.from_dict(records.HistoryPackage, document)
    write(out, key or package, record)
    return record


def write(out: str | Path, package: str, document: HistoryPackage) -> None:
    """This package's entry into <out>/history.json (the other packages' kept, unless
    they are of another schema), and history.md from the whole."""
    out = Path(out)
    path = out / "history.json"
    try:
        whole = records.read(path, HistoryResults, history_rerun(package))
    except (OSError, SchemaError):
        whole = HistoryResults()
    whole.packages[package] = document
    records.write(path, whole)
    (out / "history.md").write_text(markdown(records.to_dict(whole)))


def markdown(whole: dict[str, Any]) -> str:
    out = [
        "# History: the releases that changed a cell",
        "",
        'Generated by `nox -s "history(<package>)"`: bisection over the registry\'s releases, '
        "each probed with the matrix's own cells (tests/matrix/test_cells.py), all of them "
        "on the package's stack with vanilla gevent-websocket: a cell is named by its agent, "
        "rum, hello_goodbyer and streaming (`¬` off), e.g. `agent rum ¬hello_goodbyer "
        "streaming`.",
        "",
    ]
    for package, doc in sorted(whole["packages"].items()):
        rng = doc["range"]
        labels = sorted(
            {c for p in doc["probed"] for c in p["verdicts"]}, key=Cell.parse, reverse=True
        )
        cells = [short(c) for c in labels]
        doc = _shorten(doc)
        out += [
            f"## {package} ({doc['status']})",
            "",
            f"Stack `{doc['stack']}` (CPython {doc['python']}), agent {doc['agent']}; range "
            f"{rng['first']} .. {rng['last']} ({len(rng['releases'])} releases, usable ends "
            f"{rng['low']} .. {rng['high']}); probed {len(doc['probed'])} of "
            f"{len(rng['releases'])}; {len(doc['skipped'])} skipped; spread check: "
            f"{doc['spread']} releases over each side of the flips; wall time "
            f"{doc['wall_time']} s (load before: {doc['load_before']}).",
            "",
            f"Watched cells (they differ between the ends): {', '.join(doc['watched']) or 'none'}.",
            "",
        ]
        for i, flip in enumerate(doc["flips"], 1):
            changed = "; ".join(f"{c}: {a} -> {b}" for c, (a, b) in flip["changed"].items())
            between = (
                f" (between them, skipped: {', '.join(flip['skipped_between'])})"
                if flip["skipped_between"]
                else ""
            )
            out += [
                f"### Flip {i}: {flip['before']} -> {flip['after']}{between}",
                "",
                f"Changed: {changed}. Proof, all cells at both releases:",
                "",
                "| release | " + " | ".join(cells) + " |",
                "|---|" + "---|" * len(cells),
            ]
            for release, verdicts in flip["proof"].items():
                out.append(
                    f"| {release} | " + " | ".join(verdicts.get(c, "") for c in cells) + " |"
                )
            out += ["", "```diff", flip["diff"].rstrip("\n"), "```", ""]
        out += [
            "### Releases probed",
            "",
            "| release | why | " + " | ".join(cells) + " | build s |",
            "|---|---|" + "---|" * len(cells) + "---|",
        ]
        for p in doc["probed"]:
            build = (p["build"] or {}).get("seconds", "")
            skipped = " (skipped)" if p["release"] in {s["release"] for s in doc["skipped"]} else ""
            out.append(
                f"| {p['release']} | {', '.join(p['purposes'])}{skipped} | "
                + " | ".join(p["verdicts"].get(c, "") for c in cells)
                + f" | {build} |"
            )
        if doc["skipped"]:
            out += ["", "### Skipped releases", ""]
            out += [f"- {s['release']}: {s['reason']}" for s in doc["skipped"]]
        if doc["problems"]:
            out += ["", "### Problems", ""] + [f"- {p}" for p in doc["problems"]]
        if doc.get("notes"):
            out += [
                "",
                f"### Notes: {len(doc['notes'])} client observations differ from the "
                "model beside the verdict (first 5)",
                "",
            ]
            out += [f"- {n}" for n in doc["notes"][:5]]
        out.append("")
    return "\n".join(out)
