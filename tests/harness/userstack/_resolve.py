"""The stack's plan: its Python, its era and every pin of its server, what the file
leaves out filled in by a resolver (``uv pip compile`` at the era's date; on CPython
2.7, which uv cannot target, pip in the environment, capped by constraints), each
choice with its reason."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..cells import HANDLERS, layer_install
from ..pythons import MissingPython, find_python
from ._era import choose_python, era_of, this_python
from ._errors import StackError, installer_failure
from ._registry import Json, Registry, admits, same_version
from ._request import (
    GWS,
    HANDLER_NAMES,
    LAST_GWS,
    LAYER_PREFIXES,
    MATTERS,
    SERVER_NEEDS,
    Request,
    check_names,
)

BUILD_TOOLS = ("setuptools", "wheel")
SETUPTOOLS_FLOOR = "40.8.0"  # uv's PEP 517 fallback for a setup.py asks for >= this


@dataclass
class Plan:
    request: Request
    python_version: str
    python: str  # the interpreter found for python_version
    era: dt.datetime | None  # uploads after this are not chosen
    why_python: str
    why_era: str = ""
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version, resolved
    # (on 2.7 the exact pins alone: pip resolves the rest in the environment)
    choices: list[str] = field(default_factory=list)  # what was filled in, and why
    gws_files: list[Json] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)  # what the environment installs
    constraints: list[str] = field(default_factory=list)  # 2.7: pip's cap at the era
    uv_dates: list[str] = field(default_factory=list)  # 3.x: uv's cap at the era
    # canonical name -> the file's digests for the release installed, which the installer
    # checks; and "name==version: why not" for each installed pin it cannot check.
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    # The request layers the pins set up: {layer: its distribution} of those installed,
    # {layer: why it cannot run on this stack} of the others.
    layers: dict[str, str] = field(default_factory=dict)
    cannot_run: dict[str, str] = field(default_factory=dict)
    handler: str = GWS  # the websocket handler that serves the stack (Request.handler)
    # Another handler's release and what it brings: canonical name -> the sha256 digests
    # the installer checks (pyproject.toml's for its own pins, else the registry's), and
    # "name==version (whose sha256)" for each, as printed.
    handler_hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    handler_checked: list[str] = field(default_factory=list)

    @property
    def gws(self) -> str:
        return self.pins[GWS]

    @property
    def handler_version(self) -> str:
        return self.pins[self.handler]


def resolver_input(request: Request, layers: Collection[str]) -> tuple[list[str], list[str]]:
    """(requirements for the resolver, notes on what was added): the stack's, and of the
    layer packages only those of ``layers``, each with what its docs install beside it."""
    out = left_out(request, layers)
    reqs = {n: r for n, r in request.requirements.items() if n != GWS and n not in out}
    for layer in layers:
        # its own pin with the extras its docs name (one line each: pip 20 on 2.7
        # refuses a name given twice), then what they install beside it
        own, *beside = (Requirement(r) for r in layer_install(layer))
        name = request.served_layers()[layer]
        pin = reqs[name] = Requirement(str(reqs[name]))
        pin.extras |= own.extras
        for req in beside:
            reqs.setdefault(canonicalize_name(req.name), req)
    added = [need for need in SERVER_NEEDS if need not in request.requirements]
    return [*map(str, reqs.values()), *added], added


def left_out(request: Request, layers: Collection[str]) -> set[str]:
    """The layer packages of the pins that the server does not install: those of a layer
    not in ``layers``; OpenTelemetry's own (API, SDK) unless one of ``layers`` runs on them;
    and a handler of the pins that does not serve the stack (one handler serves it)."""
    served = {request.served_layers()[n] for n in layers}
    return {
        n
        for n in request.layers()
        if n not in served and not (n.startswith(LAYER_PREFIXES) and layers)
    } | {n for n in HANDLER_NAMES if n in request.requirements and n != request.handler()}


def layers_for_python(plan: Plan, registry: Registry) -> list[str]:
    """The layers whose pinned release admits the stack's Python (the others in
    plan.cannot_run, with the release's Requires-Python)."""
    kept = []
    for layer, name in plan.request.served_layers().items():
        version = plan.request.exact(name)
        requires = sorted(
            {f.get("requires_python") or "" for f in registry.check(name, version)} - {""}
            if version
            else ()
        )
        if requires and not any(admits(r, plan.python_version) for r in requires):
            plan.cannot_run[layer] = (
                f"{name}=={version} requires Python {' or '.join(requires)}; the stack "
                f"runs on {plan.python_version}"
            )
        else:
            kept.append(layer)
    return kept


def uv() -> str:
    """The uv nox uses: $UV (nox's own setting, which the stack session passes on), else
    uv on PATH, else the binary of the `uv` package beside this Python (as nox looks)."""
    named = os.environ.get("UV")
    found = shutil.which(named or "uv")
    if not found and not named:
        with contextlib.suppress(ImportError, FileNotFoundError):
            found = str(importlib.import_module("uv").find_uv_bin())
    if not found:
        raise StackError(
            f"uv is not found (UV={named!r} names no program)"
            if named
            else "uv is not on PATH, nor installed beside this Python (it resolves "
            "and installs the stack); `python -m pip install uv`, or run through "
            "nox"
        ) from None
    return found


def uv_pip(command: str, python: str | Path, *args: str | Path) -> list[str]:
    """``uv pip <command>`` for the stack's interpreter: how it is resolved and installed."""
    return [uv(), "pip", command, "--quiet", "--python", str(python), *map(str, args)]


def resolve(plan: Plan, registry: Registry, with_layers: bool = True) -> None:
    """Fill plan.pins with the whole server environment, and plan.choices with why;
    ``with_layers=False``: without the layer packages of the pins."""
    request = plan.request
    layers = layers_for_python(plan, registry) if with_layers else []
    reqs, added = resolver_input(request, layers)
    plan.handler = request.handler()
    gws = request.exact(GWS)
    if plan.handler != GWS:
        if plan.python_version == "2.7":
            raise StackError(
                f"{request.requirements[plan.handler]} does not run on CPython 2.7 "
                f"({HANDLERS[plan.handler]['python27-evidence']}); serve the stack on "
                "Python 3 (--python 3.X)"
            )
    elif gws is None:
        if GWS in request.requirements:
            raise StackError(
                f"{request.requirements[GWS]}: the handler under test must be "
                f"pinned exactly; write {GWS}==X.Y (e.g. {LAST_GWS})"
            )
        gws = LAST_GWS
        plan.choices.append(
            f"{GWS}=={gws}: not in the file; its last release (2017), the one users run"
        )
    if gws is not None:  # gevent-websocket serves: its sdist is built (_env.py)
        plan.gws_files = registry.check(GWS, gws)
    if plan.python_version == "2.7":
        # uv cannot resolve for CPython 2.7: pip does, in the environment itself
        # (_env.py), capped at the era by constraints on the packages that matter.
        # plan.pins: the exact ones alone (pip chooses the rest); those with the file's
        # hashes pip installs first, checking them (_env.py).
        plan.layers = {n: request.served_layers()[n] for n in layers}
        plan.pins = {
            **({GWS: gws} if gws else {}),
            **{n: v for n, v in request.pinned().items() if n not in left_out(request, layers)},
        }
        plan_hashes(plan)
        plan.constraints = era_constraints(plan, registry)
        plan.requirements = reqs
        for need in added:
            plan.choices.append(
                f"{need}: not in the file; pip chooses the newest release "
                f"that admits Python 2.7{_era_note(plan)}"
            )
        return
    plan.uv_dates = era_args(plan, registry)
    try:
        out = compile_pins(plan, reqs)
    except StackError as exc:
        if not layers:
            raise
        # The layers' pins do not go with the stack's: the stack is served without them.
        for layer in layers:
            plan.cannot_run[layer] = (
                f"its pins do not resolve with the stack's ({' '.join(str(exc).split())[:300]})"
            )
        layers = []
        reqs, added = resolver_input(request, layers)
        out = compile_pins(plan, reqs)
    plan.layers = {n: request.served_layers()[n] for n in layers}
    pins = {GWS: gws} if plan.handler == GWS and gws else {}
    for line in out.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s*(?:#\s*(.*))?$", line.strip())
        if not m:
            continue
        name, version, via = canonicalize_name(m[1]), m[2], (m[3] or "").strip()
        pins[name] = version
        if request.exact(name) is None:
            reason = (
                "not in the file, needed by the app"
                if name in added
                else f"{via}"
                if via
                else "a dependency"
            )
            plan.choices.append(
                f"{name}=={version}: {reason}; the newest that fits Python "
                f"{plan.python_version} and the pins{_era_note(plan)}"
            )
    plan.pins = pins
    plan.requirements = [f"{n}=={v}" for n, v in pins.items() if n != GWS]
    plan_hashes(plan)
    if plan.handler != GWS:
        handler_hashes(plan, registry)


def handler_hashes(plan: Plan, registry: Registry) -> None:
    """The sha256 digests the installer checks for the serving handler's release and each
    package [tool.handlers] says it brings (where the file gives none): pyproject.toml's at
    the release it pins, else every file's digest the registry lists for that release."""
    pinned = HANDLERS[plan.handler]
    ours = {
        canonicalize_name(p["name"]): (p["version"], p["sha256"])
        for p in ({"name": plan.handler, **pinned}, *pinned.get("requires", []))
    }
    for name, (version, sha) in ours.items():
        installed = plan.pins.get(name)
        if installed is None or name in plan.hashes:
            continue
        if same_version(installed, version):
            plan.handler_hashes[name] = (f"sha256:{sha}",)
            whose = "pyproject.toml's [tool.handlers] sha256"
        else:
            files = registry.check(name, installed)
            plan.handler_hashes[name] = tuple(
                f"sha256:{f['digests']['sha256']}" for f in files if f.get("digests")
            )
            whose = f"the registry's sha256 of its {len(files)} files"
        plan.handler_checked.append(f"{name}=={installed} ({whose})")


def compile_pins(plan: Plan, reqs: list[str]) -> str:
    """``uv pip compile`` of ``reqs`` for the plan's Python and era: its output."""
    # --python: the interpreter itself builds any sdist the resolver must read (else uv
    # builds it with its own, e.g. MarkupSafe 1.0's setup.py under 3.11 for a 3.7 stack).
    cmd = uv_pip(
        "compile",
        plan.python,
        "-",
        "--no-header",
        "--annotation-style",
        "line",
        "--python-version",
        plan.python_version,
        "--no-config",
        *plan.uv_dates,
    )
    proc = subprocess.run(
        cmd, input="\n".join(reqs) + "\n", capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise StackError(
            installer_failure(
                proc.stderr,
                f"resolving the stack for Python {plan.python_version}{_era_note(plan)}",
            )
        )
    return proc.stdout


def plan_hashes(plan: Plan) -> None:
    """plan.hashes: the file's digests for each pin installed at the file's release (uv
    checks them at install); plan.unverified: the others, and why."""
    files = plan.request.hashes
    if not any(d for versions in files.values() for d in versions.values()):
        return  # a file without hashes: nothing to check, nothing to claim
    for name, version in sorted(plan.pins.items()):
        digests = next(
            (d for v, d in files.get(name, {}).items() if same_version(v, version)), None
        )
        if digests:
            plan.hashes[name] = digests
        elif name == GWS:
            plan.unverified.append(
                f"{name}=={version}: the file gives no hash for it (its "
                "sdist is checked against the project's or the "
                "registry's sha256 before it is built)"
            )
        elif digests is not None:
            plan.unverified.append(f"{name}=={version}: the file gives no hash for it")
        elif name in files:
            plan.unverified.append(
                f"{name}=={version}: the file pins {', '.join(files[name])}"
                ", a package the cells do not pin; the resolver chose "
                f"this release for Python {plan.python_version}"
                f"{_era_note(plan)}"
            )
        else:
            plan.unverified.append(f"{name}=={version}: not in the file; filled in by the resolver")


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
    return [
        "--exclude-newer",
        plan.era.strftime("%Y-%m-%dT%H:%M:%SZ"),
        *(a for tool in BUILD_TOOLS for a in ("--exclude-newer-package", f"{tool}={tools}")),
    ]


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


def make_plan(request: Request, asked_python: str | None, with_layers: bool = True) -> Plan:
    """The Python is chosen from the pins that hold on every Python; the markers that
    depend on the Python are then evaluated for it, and the era dates what they pin too.
    ``with_layers=False``: the server environment without the layer packages."""
    registry = Registry()
    check_names(request, registry)
    for name, version in request.pinned().items():
        registry.check(name, version)
    era, why_era = era_of(request, registry)
    version, why = choose_python(request, registry, asked_python, era)
    try:
        python = (
            sys.executable
            if version == this_python() and not asked_python
            else find_python(version)
        )
    except MissingPython as exc:
        raise StackError(str(exc)) from None
    if request.conditional:
        request = request.for_python(version, full_version(python))
        check_names(request, registry)
        era, why_era = era_of(request, registry)
    else:
        request = request.for_python(version)
    plan = Plan(
        request=request,
        python_version=version,
        python=python,
        era=era,
        why_python=why,
        why_era=why_era,
    )
    resolve(plan, registry, with_layers)
    return plan


def full_version(python: str) -> str:
    """X.Y.Z of an interpreter, for the markers that name python_full_version."""
    if python == sys.executable:
        return platform.python_version()
    return subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


def describe(plan: Plan, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    r = plan.request
    print(f"stack {r.name}: " + " ".join(str(q) for q in r.requirements.values()), file=out)
    for line in r.ignored:
        print(f"  ignored: {line}", file=out)
    if plan.handler != GWS:
        print(
            f"  handler {plan.handler}=={plan.pins.get(plan.handler, '?')} serves the stack "
            f"(gevent-websocket not installed); installed from verified files: "
            + ", ".join(plan.handler_checked),
            file=out,
        )
    for name in left_out(r, plan.layers):
        if name in HANDLER_NAMES:
            print(
                f"  not installed: {r.requirements[name]}: {plan.handler} serves this "
                "stack (the cells run one websocket handler)",
                file=out,
            )
        elif name not in r.served_layers().values():
            print(
                f"  not installed: {r.requirements[name]}: no layer served here runs on it",
                file=out,
            )
    print(f"  python {plan.python_version} ({plan.python}): {plan.why_python}", file=out)
    print(
        f"  era: releases uploaded before {plan.era.date() if plan.era else 'today'} "
        f"({plan.why_era})",
        file=out,
    )
    for line in plan.choices:
        print(f"  chose {line}", file=out)
    for line in plan.constraints:
        print(f"  capped {line} (the era's newest admitting Python 2.7)", file=out)
