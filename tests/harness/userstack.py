"""Your stack: the cells, the model and the causes for the versions a user runs (issue 20).

    python -m tests.harness.userstack -r requirements.txt [--python X.Y] [--predict]
    python -m tests.harness.userstack Flask==1.1.4 gevent==20.9.0 [--python X.Y] [--predict]

1. the pins that matter are taken from the file (the others are listed as ignored);
2. each exact pin is checked against the registry (a release that does not exist is
   an error), and the newest upload among them dates the stack's era;
3. a Python is chosen (``--python``, else this interpreter if the pins have it, else the
   newest one here that every pinned binary release has a wheel for) and found the way
   the seed's 2.7 is (tests/harness/pythons.py);
4. what the file leaves out is filled in by a resolver: ``uv pip compile`` for that
   Python with ``--exclude-newer`` the era's date (so greenlet is one the pinned gevent
   could have been built against, Jinja2 one of that Flask's time); on CPython 2.7,
   which uv cannot target, pip resolves, capped at the era's releases by constraints;
   every choice is printed with its reason;
5. the environment is built in a temporary directory and renamed into place only once
   complete (tests/harness/stackenv.py); the gevent-websocket release is the verified
   sdist, vanilla and, where ``patches/gevent-websocket/<version>/`` exists, patched;
6. the cells run (tests/matrix/test_cells.py, agent on/off x vanilla/patched) and the grid
   is printed beside the model's prediction, with the causes.

``--predict`` stops after step 1: the model's grid from the pins alone, no network.
Bad input is one line ``error: <cause>; <fix>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .cells import BOOLS, STACKS, Cell
from .cells import slug as cells_slug
from .model import AGENT_SKIPS_WEBSOCKETS, Prediction, StackFacts, predict
from .paths import ROOT
from .stackenv import StackError

if TYPE_CHECKING:
    from .stackenv import Env

Json = dict[str, Any]  # a registry file entry, a results document
Arm = tuple[bool, bool]  # (agent, fixed): a row of the grid
Column = tuple[bool, bool, bool]  # (rum, hello_goodbyer, streaming)
Grid = dict[Arm, dict[Column, Prediction]]
Observed = dict[Arm, dict[Column, tuple[str, bool]]]  # (verdict, iterable closed)

EXIT_BAD_INPUT = 2
GWS = "gevent-websocket"
# The pins that decide a cell: the server, the handler, the agent, Flask's own line,
# and the APM layers of issue 19 (their cells run once that issue lands).
MATTERS = ("gevent", "greenlet", GWS, "flask", "werkzeug", "jinja2", "markupsafe",
           "itsdangerous", "click", "newrelic")
LAYERS = ("elastic-apm", "sentry-sdk", "ddtrace")
LAYER_PREFIXES = ("opentelemetry-",)
# What `python -m app` imports; filled in when the file leaves it out.
SERVER_NEEDS = ("gevent", "flask", "newrelic")
# The names the server reports (app/__main__.py versions()), which --release must match.
REPORTED = {"gevent": "gevent", "greenlet": "greenlet", "flask": "Flask",
            "werkzeug": "Werkzeug", "newrelic": "newrelic", GWS: GWS}
PATCHES = ROOT / "patches" / GWS
BUILD_TOOLS = ("setuptools", "wheel")
SETUPTOOLS_FLOOR = "40.8.0"  # uv's PEP 517 fallback for a setup.py asks for >= this
LAST_GWS = STACKS["today"][GWS]["version"]  # the last release there is (2017)




def matters(name: str) -> bool:
    name = canonicalize_name(name)
    return name in MATTERS or name in LAYERS or name.startswith(LAYER_PREFIXES)


# -- 1. what the user asked for ----------------------------------------------------------


@dataclass
class Request:
    name: str  # the stack's name: the file's stem, or "command-line"
    requirements: dict[str, Requirement]  # canonical name -> requirement, those that matter
    ignored: list[str] = field(default_factory=list)

    def exact(self, name: str) -> str | None:
        """The version of an exact ``==`` pin of ``name`` (no wildcard), else None."""
        req = self.requirements.get(canonicalize_name(name))
        specs = list(req.specifier) if req else []
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None

    def pinned(self) -> dict[str, str]:
        """{canonical name: version} of the exact pins."""
        return {n: v for n in self.requirements if (v := self.exact(n)) is not None}

    def layers(self) -> list[str]:
        return [n for n in self.requirements if n in LAYERS or n.startswith(LAYER_PREFIXES)]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """A requirements file's lines, continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            yield number, line


def read_requirements(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, str]]:
    """``[(where, requirement text)]`` of a pip requirements file, ``-r`` included."""
    path = Path(path)
    if not path.is_file():
        raise StackError(f"{path}: no such file; pass the path of a requirements file (-r FILE)")
    if path.resolve() in seen:
        raise StackError(f"{path}: includes itself (-r cycle); remove the -r line")
    out = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8", errors="replace")):
        where = f"{path.name}:{number}"
        include = re.match(r"^(-r|--requirement)[\s=]+(\S+)$", line)
        if include:
            out += read_requirements(path.parent / include.group(2), (*seen, path.resolve()))
            continue
        if line.startswith("-"):  # -i, --hash on its own, -e, -c: nothing to pin
            out.append((where, line))
            continue
        out.append((where, re.split(r"\s+--?\w", " " + line, maxsplit=1)[0].strip()
                    if " --" in line else line))
    return out


def parse(lines: list[tuple[str, str]], name: str) -> Request:
    """The requirements that matter, the others listed as ignored; conflicts refused."""
    request = Request(name=name, requirements={})
    for where, text in lines:
        if text.startswith("-"):
            request.ignored.append(f"{text} ({where}: an option, not a pin)")
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise StackError(f"{where}: {text!r} is not a requirement ({exc}); write NAME==VERSION"
                             ) from None
        key = canonicalize_name(req.name)
        if not matters(key):
            import difflib

            near = difflib.get_close_matches(key, MATTERS + LAYERS, n=1, cutoff=0.85)
            if near:
                raise StackError(f"{where}: {req.name!r} is not a package the cells know, but "
                                 f"close to {near[0]!r}; fix the spelling")
            request.ignored.append(f"{text} ({where})")
            continue
        if req.url:
            raise StackError(f"{where}: {text!r} installs from a URL; pin a release from the "
                             "registry instead (NAME==VERSION)")
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                try:
                    Version(spec.version)
                except InvalidVersion:
                    raise StackError(f"{where}: {spec.version!r} is not a version; write "
                                     f"{req.name}==X.Y.Z") from None
        if key in request.requirements:
            merged = SpecifierSet(str(request.requirements[key].specifier) + "," + str(
                req.specifier).strip(",")) if req.specifier else request.requirements[key].specifier
            exact = [s.version for s in merged if s.operator == "=="]
            if len(set(exact)) > 1:
                raise StackError(f"{where}: {req.name} is pinned twice, to "
                                 f"{' and '.join(sorted(set(exact)))}; keep one pin")
            req = Requirement(f"{req.name}{merged}")
        request.requirements[key] = req
    return request


def from_args(pins: list[str], file: str | None) -> Request:
    if file and pins:
        raise StackError("give either -r FILE or NAME==VERSION pins, not both; "
                         "put the pins in the file")
    if file:
        return parse(read_requirements(Path(file)), stack_name(Path(file).stem))
    if not pins:
        raise StackError("no pins: pass -r FILE or NAME==VERSION ... "
                         "(e.g. Flask==1.1.4 gevent==20.9.0 gevent-websocket==0.10.1)")
    request = parse([(f"argument {i}", p) for i, p in enumerate(pins, 1)], "pins")
    # Named by its pins, so that two stacks given on the command line keep their results apart.
    named = "_".join(f"{n}-{request.exact(n)}" for n in sorted(request.requirements)
                     if request.exact(n))
    request.name = stack_name(named if 0 < len(named) <= 80 else "pins-" + hashlib.sha256(
        " ".join(pins).encode()).hexdigest()[:10])
    return request


def stack_name(name: str) -> str:
    """The user stack's name in records, labels and slugs: the file's stem (or the pins),
    in characters a slug and a file name keep; ``user-`` before a name pyproject.toml's
    [tool.stacks] already has (tests/data/stacks/today.txt is not the `today` stack)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "stack"
    return f"user-{name}" if name in STACKS else name


# -- 2. the model, from the pins alone ---------------------------------------------------


ARMS = [(agent, fixed) for fixed in BOOLS for agent in BOOLS]
COLUMNS = [(r, h, s) for r in BOOLS for h in BOOLS for s in BOOLS]


def model_versions(request: Request) -> tuple[dict[str, str], list[str]]:
    """{gevent-websocket, newrelic} for the model, and what had to be assumed."""
    assumed = []
    gws = request.exact(GWS)
    if gws is None:
        gws = LAST_GWS
        assumed.append(f"{GWS} is not pinned exactly: assumed {LAST_GWS}, its last release")
    nr = request.exact("newrelic")
    if nr is None:
        nr = str(AGENT_SKIPS_WEBSOCKETS)
        assumed.append(f"newrelic is not pinned exactly: assumed a release >= {nr} (since "
                       "2016), whose RUM leaves websockets alone; an older one makes the "
                       "agent-on rum-on cells of the vanilla arm fail")
    return {GWS: gws, "newrelic": nr}, assumed


def prediction_grid(name: str, versions: dict[str, str]) -> Grid:
    """{(agent, fixed): {(rum, hg, streaming): Prediction}} for the given versions."""
    grid: Grid = {}
    for agent, fixed in ARMS:
        reported = dict(versions)
        if fixed:
            reported[GWS] = versions[GWS] + "+fixed"
        facts = StackFacts.from_versions(reported)
        grid[(agent, fixed)] = {col: predict(Cell(name, agent, fixed, *col), facts)
                                for col in COLUMNS}
    return grid


def cause(versions: dict[str, str], fixed: bool, prediction: Prediction, streaming: bool
          ) -> str:
    """Why the model predicts what it does for one cell, in a sentence (one per kind)."""
    if not (prediction.lazy_layers or streaming):
        return ""
    gws = versions[GWS] + ("+fixed" if fixed else "")
    lazy = ("its lazy layers (the streaming response's iterator, the HelloGoodbyer "
            "generator, the agent's RUM middleware below newrelic "
            f"{AGENT_SKIPS_WEBSOCKETS})")
    if prediction.verdict == "-":
        return (f"gevent-websocket {gws} does not iterate the application's result (before "
                f"0.10 it calls the application and drops what it returns), so {lazy} never run")
    return f"gevent-websocket {gws} iterates the application's result, so {lazy} run"


def print_grid(title: str, rows: Grid, versions: dict[str, str], out: TextIO | None = None,
               observed: Observed | None = None) -> None:
    """The grid as the report draws it: rows agent x fixed, columns rum x hg x streaming.

    ``observed``: {(agent, fixed): {col: (verdict, closed)}}; a cell whose verdict is not
    the model's is marked ``!``, one whose iterable was never closed ``o``.
    """
    out = out or sys.stdout
    head = ("rum", "hello_goodbyer", "streaming")
    print(title, file=out)
    for i, label in enumerate(head):
        print(f"{label:>24}  " + " ".join(f"{'on' if c[i] else 'off':<5}" for c in COLUMNS),
              file=out)
    causes: dict[str, str] = {}
    for arm in (a for a in ARMS if a in rows):
        agent, fixed = arm
        cells = []
        for col in COLUMNS:
            p = rows[arm][col]
            text = cause(versions, fixed, p, col[2])
            letter = ""
            if text:
                letter = causes.setdefault(text, "ABCDEFGHIJKLMNOP"[len(causes)])
            if observed is None:
                mark = p.verdict + ("" if p.iterable_closed else "o") + letter
            else:
                seen = observed.get(arm, {}).get(col)
                if seen is None:
                    mark = "?"
                else:
                    verdict, closed = seen
                    mark = verdict + ("!" if verdict != p.verdict else "") + (
                        "" if closed else "o") + letter
            cells.append(f"{mark:<5}")
        label = f"agent {'on' if agent else 'off'} · {'patched' if fixed else 'vanilla'}"
        print(f"{label:>24}  " + " ".join(cells), file=out)
    for text, letter in causes.items():
        print(f"  {letter}: {text}", file=out)
    print("  o: the server never called close() on the application's iterable (PEP 3333)"
          + ("; !: observed verdict differs from the model's" if observed is not None else ""),
          file=out)


def run_predict(request: Request, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    versions, assumed = model_versions(request)
    for line in assumed:
        print(f"note: {line}", file=out)
    has_patches = (PATCHES / versions[GWS]).is_dir()
    rows = prediction_grid(request.name, versions)
    if not has_patches:
        rows = {arm: cells for arm, cells in rows.items() if not arm[1]}
        print(f"note: no patch series for gevent-websocket {versions[GWS]} "
              f"(patches/{GWS}/ has {sorted(p.name for p in PATCHES.iterdir())}): vanilla only",
              file=out)
    print_grid(f"model: {request.name} (gevent-websocket {versions[GWS]}, newrelic "
               f"{versions['newrelic']})", _full(rows), versions, out)
    return 0


def _full(rows: Grid) -> Grid:
    return {arm: rows.get(arm) or {} for arm in ARMS if arm in rows}


# -- 3. the registry, the era and the Python ---------------------------------------------


class Registry:
    """The registry's release lists (its JSON), read once per project per run."""

    def __init__(self) -> None:
        self.releases: dict[str, dict[str, list[Json]]] = {}

    def files(self, name: str) -> dict[str, list[Json]]:
        key = canonicalize_name(name)
        if key not in self.releases:
            from .builds import BuildError, registry_releases

            try:
                self.releases[key] = registry_releases(key)
            except BuildError as exc:
                raise StackError(f"{exc}; check the network or the name {name!r}") from None
            except Exception as exc:  # noqa: BLE001  404: no such project
                raise StackError(f"{name}: not on the registry ({exc!r}); check the spelling"
                                 ) from None
        return self.releases[key]

    def check(self, name: str, version: str) -> list[Json]:
        files = self.files(name)
        match = [v for v in files if _same(v, version)]
        if not match or not files[match[0]]:
            newest = _newest(files)
            raise StackError(f"{name}=={version} does not exist on the registry (its releases "
                             f"run to {newest}); pin a release it has, e.g. {name}=={newest}")
        return files[match[0]]

    def uploaded(self, name: str, version: str) -> dt.datetime:
        return max(_time(f) for f in self.check(name, version))

    def newest_before(self, name: str, before: dt.datetime, python: str | None) -> str | None:
        """The newest release of ``name`` uploaded before ``before`` that admits ``python``."""
        best = None
        for version, files in self.files(name).items():
            try:
                v = Version(version)
            except InvalidVersion:
                continue
            usable = [f for f in files if not f.get("yanked") and _time(f) < before
                      and (python is None or _admits(f.get("requires_python"), python))]
            if usable and not v.is_prerelease and (best is None or v > best):
                best = v
        return str(best) if best else None


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _newest(files: dict[str, list[Json]]) -> str:
    versions = []
    for v, f in files.items():
        try:
            if f and not Version(v).is_prerelease:
                versions.append(Version(v))
        except InvalidVersion:
            pass
    return str(max(versions)) if versions else "(none)"


def _time(f: Json) -> dt.datetime:
    stamp = f.get("upload_time_iso_8601") or f["upload_time"] + "Z"
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _admits(requires_python: str | None, python: str) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(python + ".0", prereleases=True) or \
            SpecifierSet(requires_python).contains(python, prereleases=True)
    except Exception:  # noqa: BLE001  unparseable metadata of old releases
        return True


def wheel_pythons(files: list[Json]) -> set[str] | None:
    """The X.Y a release has CPython-specific wheels for; None when it has none (pure
    Python, or an sdist only: no binary evidence either way)."""
    found: set[str] = set()
    abi3: list[str] = []
    for f in files:
        if not f["filename"].endswith(".whl"):
            continue
        try:
            tags = parse_wheel_filename(f["filename"])[3]
        except Exception:  # noqa: BLE001  a malformed old file name
            continue
        for tag in tags:
            m = re.fullmatch(r"cp(\d)(\d+)", tag.interpreter)
            if not (m and tag.abi != "none" and "linux" in tag.platform
                    and "x86_64" in tag.platform):
                continue
            if tag.abi == "abi3":
                abi3.append(f"{m[1]}.{m[2]}")
            else:
                found.add(f"{m[1]}.{m[2]}")
    if abi3:
        floor = min(abi3, key=_mm)
        found |= {v for v in _ALL_PYTHONS if _mm(v) >= _mm(floor)}
    return found or None


_ALL_PYTHONS = ["2.7"] + [f"3.{n}" for n in range(6, 15)]


def _mm(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass
class Plan:
    request: Request
    python_version: str
    python: str  # the interpreter found for python_version
    era: dt.datetime | None  # uploads after this are not chosen
    why_python: str
    why_era: str = ""
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version, resolved
    choices: list[str] = field(default_factory=list)  # what was filled in, and why
    gws_files: list[Json] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)  # what the environment installs
    constraints: list[str] = field(default_factory=list)  # 2.7: pip's cap at the era
    uv_dates: list[str] = field(default_factory=list)  # 3.x: uv's cap at the era

    @property
    def gws(self) -> str:
        return self.pins[GWS]


def supported(request: Request, registry: Registry, era: dt.datetime | None
              ) -> dict[str, set[str]]:
    """Per package, the X.Y it supports by its wheels and Requires-Python: the exact pins,
    and for a server need the file leaves out, its newest release of the era (a 2018
    gevent has no wheel for 3.11, so a 2018 stack does not run there)."""
    out = {}
    names = request.pinned()
    for need in SERVER_NEEDS:
        if need not in request.requirements and era is not None:
            newest = registry.newest_before(need, era, None)
            if newest:
                names[f"{need} {newest} (the era's)"] = newest
    for label, version in names.items():
        name = label.split()[0]
        files = registry.check(name, version)
        pythons = set(_ALL_PYTHONS)
        by_wheel = wheel_pythons(files)
        if by_wheel is not None:
            pythons &= by_wheel
        requires = {f.get("requires_python") for f in files} - {None, ""}
        for spec in requires:
            pythons = {p for p in pythons if _admits(spec, p)}
        out[label] = pythons
    return out


def choose_python(request: Request, registry: Registry, asked: str | None,
                  era: dt.datetime | None) -> tuple[str, str]:
    """(X.Y, why) of the Python the stack runs on."""
    from .pythons import installed_versions

    support = supported(request, registry, era)
    common = set(_ALL_PYTHONS).intersection(*support.values()) if support else set(_ALL_PYTHONS)
    limiting = sorted(n for n, s in support.items() if s != set(_ALL_PYTHONS))
    if asked:
        unsupported = sorted(n for n, s in support.items() if asked not in s)
        if unsupported:
            print(f"warning: Python {asked} was asked for, but "
                  + ", ".join(f"{n} (has {_span(support[n])})"
                              for n in unsupported)
                  + ": an sdist may have to build", file=sys.stderr)
        return asked, "asked for with --python"
    if not common:
        raise StackError("no Python fits every pin: " + "; ".join(
            f"{n}: {_span(support[n])}" for n in limiting)
            + "; change a pin or name a Python with --python X.Y")
    if this_python() in common:
        return this_python(), "the interpreter this runs on, which every pin admits"
    here = [v for v in installed_versions() if v in common]
    if not here:
        raise StackError(f"the pins need Python {_span(common)} "
                         f"({', '.join(limiting) or 'Requires-Python'}), none of which is "
                         "installed here; install one with `pyenv install X.Y` or pass "
                         "--python X.Y")
    return here[0], (f"the newest Python here that {', '.join(limiting)} support "
                     f"({_span(common)}; this interpreter, {this_python()}, is not among them)")


def _span(pythons: set[str]) -> str:
    ordered = sorted(pythons, key=_mm)
    return "no Python" if not ordered else (
        ordered[0] if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}")


def era_of(request: Request, registry: Registry) -> tuple[dt.datetime | None, str]:
    """The day after the newest upload among the exact pins, and which pin that is."""
    dated = [(registry.uploaded(n, v), n) for n, v in request.pinned().items()]
    if not dated:
        return None, "no exact pin: today's releases"
    when, name = max(dated)
    day = dt.datetime.combine(when.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return day, f"{name}=={request.exact(name)}, uploaded {when.date()}"


# -- 4. filling in what the file leaves out ----------------------------------------------


def resolver_input(request: Request) -> tuple[list[str], list[str]]:
    """(requirements for the resolver, notes on what was added)."""
    reqs = [str(r) for n, r in request.requirements.items()
            if n != GWS and n not in LAYERS and not n.startswith(LAYER_PREFIXES)]
    added = []
    for need in SERVER_NEEDS:
        if need not in request.requirements:
            reqs.append(need)
            added.append(need)
    return reqs, added


def uv() -> str:
    import shutil

    found = shutil.which("uv")
    if not found:
        raise StackError("uv is not on PATH (it resolves and installs the stack); "
                         "`python -m pip install uv`, or run through nox")
    return found


def resolve(plan: Plan, registry: Registry) -> None:
    """Fill plan.pins with the whole server environment, and plan.choices with why."""
    request = plan.request
    reqs, added = resolver_input(request)
    gws = request.exact(GWS)
    if gws is None:
        if GWS in request.requirements:
            raise StackError(f"{request.requirements[GWS]}: the handler under test must be "
                             f"pinned exactly; write {GWS}==X.Y (e.g. {LAST_GWS})")
        gws = LAST_GWS
        plan.choices.append(f"{GWS}=={gws}: not in the file; its last release (2017), "
                            "the one users run")
    plan.gws_files = registry.check(GWS, gws)
    if plan.python_version == "2.7":
        # uv cannot resolve for CPython 2.7: pip does, in the environment itself
        # (stackenv), capped at the era by constraints on the packages that matter.
        plan.pins = {GWS: gws}
        plan.constraints = era_constraints(plan, registry)
        plan.requirements = reqs
        for need in added:
            plan.choices.append(f"{need}: not in the file; pip chooses the newest release "
                                f"that admits Python 2.7{_era_note(plan)}")
        return
    plan.uv_dates = era_args(plan, registry)
    # --python: the interpreter itself builds any sdist the resolver must read (else uv
    # builds it with its own, e.g. MarkupSafe 1.0's setup.py under 3.11 for a 3.7 stack).
    cmd = [uv(), "pip", "compile", "-", "--quiet", "--no-header", "--annotation-style", "line",
           "--python-version", plan.python_version, "--python", plan.python, "--no-config",
           *plan.uv_dates]
    proc = subprocess.run(cmd, input="\n".join(reqs) + "\n", capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise StackError(installer_failure(proc.stderr, f"resolving the stack for Python "
                                           f"{plan.python_version}{_era_note(plan)}"))
    pins = {GWS: gws}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s*(?:#\s*(.*))?$", line.strip())
        if not m:
            continue
        name, version, via = canonicalize_name(m[1]), m[2], (m[3] or "").strip()
        pins[name] = version
        if request.exact(name) is None:
            reason = ("not in the file, needed by the app" if name in added else
                      f"{via}" if via else "a dependency")
            plan.choices.append(f"{name}=={version}: {reason}; the newest that fits Python "
                                f"{plan.python_version} and the pins{_era_note(plan)}")
    plan.pins = pins
    plan.requirements = [f"{n}=={v}" for n, v in pins.items() if n != GWS]


def era_args(plan: Plan, registry: Registry) -> list[str]:
    """uv's --exclude-newer for the era, for the resolver and the installer alike.

    The build tools get the era's releases too (MarkupSafe 1.0's setup.py imports
    setuptools.Feature, gone since 46), but none older than uv's floor for a legacy
    setup.py (setuptools >= 40.8.0, its PEP 517 fallback): a 2018 sdist builds with that.
    """
    if plan.era is None:
        return []
    floor = registry.uploaded("setuptools", SETUPTOOLS_FLOOR) + dt.timedelta(days=1)
    tools = max(plan.era, floor).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ["--exclude-newer", plan.era.strftime("%Y-%m-%dT%H:%M:%SZ"),
            *(a for tool in BUILD_TOOLS for a in ("--exclude-newer-package", f"{tool}={tools}"))]


def installer_failure(output: str, what: str) -> str:
    """One line from a resolver's or installer's output: the cause, then the fix."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    built = next((re.search(r"Failed to build `?([^`\s]+)`?", ln) for ln in lines
                  if re.search(r"Failed to build|Failed building wheel for", ln)), None)
    if built or any("Failed building wheel for" in ln for ln in lines):
        name = built.group(1) if built else next(
            ln.split("for", 1)[1].strip() for ln in lines if "Failed building wheel for" in ln)
        errors = [ln for ln in lines if re.match(r"^\w*(Error|error)\b|^\w+Error:", ln)]
        detail = errors[-1][:200] if errors else lines[-1][:200]
        return (f"{what}: {name} has no wheel for this Python and its sdist does not build "
                f"here ({detail}); pin a release with a wheel for it, or choose another "
                "--python")
    conflict = [ln for ln in lines if "unsatisfiable" in ln or "No solution found" in ln
                or "ResolutionImpossible" in ln or "conflict" in ln.lower()]
    if conflict:
        detail = " ".join(ln.removeprefix("╰─▶").strip() for ln in lines[1:4])[:400]
        return f"{what}: the pins conflict ({detail}); change one of the pins it names"
    missing = [ln for ln in lines if "No matching distribution" in ln
               or "Could not find a version" in ln or "not found in the package registry" in ln]
    if missing:
        return f"{what}: {missing[0][:300]}; pin a release that exists for this Python"
    return f"{what} failed: {' | '.join(lines[-3:])[:500]}"


def _era_note(plan: Plan) -> str:
    return f", uploaded before {plan.era.date()}" if plan.era else ""


def era_constraints(plan: Plan, registry: Registry) -> list[str]:
    """``name<=V`` for the packages that matter and are not pinned: pip's exclude-newer."""
    if plan.era is None:
        return []
    out = []
    for name in MATTERS:
        if name == GWS or plan.request.exact(name):
            continue
        newest = registry.newest_before(name, plan.era, plan.python_version)
        if newest:
            out.append(f"{name}<={newest}")
    return out


def make_plan(request: Request, asked_python: str | None) -> Plan:
    from .pythons import MissingPython, find_python

    registry = Registry()
    for name, version in request.pinned().items():
        registry.check(name, version)
    era, why_era = era_of(request, registry)
    version, why = choose_python(request, registry, asked_python, era)
    try:
        python = sys.executable if version == this_python() and not asked_python else \
            find_python(version)
    except MissingPython as exc:
        raise StackError(str(exc)) from None
    plan = Plan(request=request, python_version=version, python=python, era=era,
                why_python=why, why_era=why_era)
    resolve(plan, registry)
    return plan


def describe(plan: Plan, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    r = plan.request
    print(f"stack {r.name}: " + " ".join(str(q) for q in r.requirements.values()), file=out)
    for line in r.ignored:
        print(f"  ignored: {line}", file=out)
    for layer in r.layers():
        print(f"  layer {r.requirements[layer]}: read, not yet served (its cells come with "
              "the layers of issue 19)", file=out)
    print(f"  python {plan.python_version} ({plan.python}): {plan.why_python}", file=out)
    print(f"  era: releases uploaded before {plan.era.date() if plan.era else 'today'} "
          f"({plan.why_era})", file=out)
    for line in plan.choices:
        print(f"  chose {line}", file=out)
    for line in plan.constraints:
        print(f"  capped {line} (the era's newest admitting Python 2.7)", file=out)


# -- 5-6. build and run ------------------------------------------------------------------


def session_name(name: str, agent: bool, fixed: bool) -> str:
    return f"stack({name}, agent={agent}, fixed={fixed})"


def pins_claimed(env_versions: dict[str, str | None]) -> list[str]:
    """pytest --pin options, the stack's own pins: the positive controls expect the server
    to report each (tests/matrix/test_cells.py positive_controls)."""
    return [f"{REPORTED[n]}=={v}" for n, v in env_versions.items() if n in REPORTED and v]


def run_cells(plan: Plan, env: Env, results: Path, jobs: int, out: TextIO | None = None
              ) -> dict[Arm, Json]:
    """pytest on the cells per arm; {(agent, fixed): results document}."""
    out = out or sys.stdout
    from concurrent.futures import ThreadPoolExecutor

    arms = [(a, f) for a, f in ARMS if not f or env.patched]
    results.mkdir(parents=True, exist_ok=True)

    def one(arm: Arm) -> tuple[Arm, Json]:
        agent, fixed = arm
        name = session_name(plan.request.name, agent, fixed)
        slug = cells_slug(name)
        (results / f"{slug}.json").unlink(missing_ok=True)  # never read a previous run's
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
               "tests/matrix/test_cells.py", "--stack", plan.request.name,
               "--agent" if agent else "--no-agent", "--fixed" if fixed else "--no-fixed",
               "--server-python", str(env.python), "--session-name", name,
               "--results", str(results / f"{slug}.json"),
               "--junitxml", str(results / f"{slug}.junit.xml"),
               "--server-logs", str(results / f"{slug}.logs"),
               *(a for pin in pins_claimed(env.versions) for a in ("--pin", pin))]
        environ = dict(os.environ)
        if fixed:
            environ["PYTHONPATH"] = os.pathsep.join(
                [str(env.patched)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True,
                              timeout=900, check=False)
        (results / f"{slug}.pytest.log").write_text(proc.stdout + proc.stderr)
        try:
            doc = json.loads((results / f"{slug}.json").read_text())
        except (OSError, ValueError):
            doc = {"cells": []}
        doc["pytest_exit"] = proc.returncode
        doc["wall"] = round(time.monotonic() - started, 2)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
        print(f"  {name}: pytest exit {proc.returncode} in {doc['wall']} s: {tail[0]}", file=out)
        return arm, doc

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(pool.map(one, arms))


def observed_grid(docs: dict[Arm, Json]) -> Observed:
    grid: Observed = {}
    for arm, doc in docs.items():
        for record in doc.get("cells", []):
            c = record["cell"]
            closed = all(o.get("iterable_closed", True) for o in record["observed"])
            verdicts = {o["verdict"] for o in record["observed"]}
            verdict = verdicts.pop() if len(verdicts) == 1 else "~"
            grid.setdefault(arm, {})[(c["rum"], c["hello_goodbyer"], c["streaming"])] = (
                verdict, closed)
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.userstack",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("pins", nargs="*", metavar="NAME==VERSION")
    parser.add_argument("-r", "--requirement", metavar="FILE")
    parser.add_argument("--python", metavar="X.Y", help="the Python the server runs on "
                        "(default: this one, if the pins admit it)")
    parser.add_argument("--predict", action="store_true",
                        help="the model's grid and causes only: build and run nothing")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "stacks",
                        help="where environments are built (kept: a second run reuses them)")
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="where each arm's SessionResults go, beside every session's "
                        "(nox passes MATRIX_RESULTS)")
    parser.add_argument("--jobs", type=int, default=2, help="arms run at once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        request = from_args(args.pins, args.requirement)
        if args.python and not re.fullmatch(r"\d+\.\d+", args.python):
            raise StackError(f"--python {args.python!r} is not a version X.Y; name one, e.g. "
                             "--python 3.8")
        if args.predict:
            return run_predict(request)
        plan = make_plan(request, args.python)
        describe(plan)
        from .stackenv import build

        env = build(plan, args.work)
        print(f"  environment {env.path} ({'reused' if env.reused else 'built'} in "
              f"{time.monotonic() - started:.1f} s): "
              + " ".join(f"{k}=={v}" for k, v in sorted(env.versions.items())))
        if plan.python_version == "2.7":  # pip resolved in the environment: say what it chose
            for name in MATTERS:
                if not request.exact(name) and env.installed.get(name):
                    print(f"  chose {name}=={env.installed[name]}: pip's choice for Python 2.7 "
                          "under the era's caps")
        if not env.patched:
            print(f"  no patch series for gevent-websocket {plan.gws} (patches/{GWS}/ has "
                  f"{', '.join(sorted(p.name for p in PATCHES.iterdir()))}): vanilla only")
        env.smoke()
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    results = args.results
    versions = {GWS: plan.gws, "newrelic": env.versions.get("newrelic") or "0"}
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if not arm[1] or env.patched}
    print_grid(f"model: {request.name} (gevent-websocket {plan.gws}, newrelic "
               f"{versions['newrelic']})", rows, versions)
    docs = run_cells(plan, env, results, args.jobs)
    print_grid(f"observed: {request.name} on Python {plan.python_version} (beside the model: "
               "! marks a disagreement)", rows, versions, observed=observed_grid(docs))
    failed = [session_name(request.name, *arm) for arm, doc in docs.items()
              if doc.get("pytest_exit") != 0]
    cells = sum(len(d.get("cells", [])) for d in docs.values())
    print(f"{cells} cells in {time.monotonic() - started:.1f} s; results in {results}"
          + (f"; failed: {', '.join(failed)} (see *.pytest.log there)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    # Through the package, so that stackenv raises the StackError main() catches.
    from tests.harness.userstack import main as package_main

    sys.exit(package_main())
