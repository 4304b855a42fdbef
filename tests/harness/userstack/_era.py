"""The stack's era (the day after its newest exact pin's upload) and the Python it runs
on (asked for, this one, or the newest here that every pin has a wheel for)."""

from __future__ import annotations

import datetime as dt
import sys

from ..pythons import installed_versions
from ._errors import StackError
from ._registry import PYTHONS, Registry, admits, python_key, wheel_pythons
from ._request import SERVER_NEEDS, Request


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def supported(request: Request, registry: Registry, era: dt.datetime | None) -> dict[str, set[str]]:
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
        pythons = set(PYTHONS)
        by_wheel = wheel_pythons(files)
        if by_wheel is not None:
            pythons &= by_wheel
        requires = {f.get("requires_python") for f in files} - {None, ""}
        for spec in requires:
            pythons = {p for p in pythons if admits(spec, p)}
        out[label] = pythons
    return out


def choose_python(
    request: Request, registry: Registry, asked: str | None, era: dt.datetime | None
) -> tuple[str, str]:
    """(X.Y, why) of the Python the stack runs on."""
    support = supported(request, registry, era)
    common = set(PYTHONS).intersection(*support.values()) if support else set(PYTHONS)
    limiting = sorted(n for n, s in support.items() if s != set(PYTHONS))
    if asked:
        unsupported = sorted(n for n, s in support.items() if asked not in s)
        if unsupported:
            print(
                f"warning: Python {asked} was asked for, but "
                + ", ".join(f"{n} (has {_span(support[n])})" for n in unsupported)
                + ": an sdist may have to build",
                file=sys.stderr,
            )
        return asked, "asked for with --python"
    if not common:
        raise StackError(
            "no Python fits every pin: "
            + "; ".join(f"{n}: {_span(support[n])}" for n in limiting)
            + "; change a pin or name a Python with --python X.Y"
        )
    if this_python() in common:
        return this_python(), "the interpreter this runs on, which every pin admits"
    here = [v for v in installed_versions() if v in common]
    if not here:
        raise StackError(
            f"the pins need Python {_span(common)} "
            f"({', '.join(limiting) or 'Requires-Python'}), none of which is "
            "installed here; install one with `pyenv install X.Y` or pass "
            "--python X.Y"
        )
    return here[0], (
        f"the newest Python here that {', '.join(limiting)} support "
        f"({_span(common)}; this interpreter, {this_python()}, is not among them)"
    )


def _span(pythons: set[str]) -> str:
    ordered = sorted(pythons, key=python_key)
    return (
        "no Python"
        if not ordered
        else (ordered[0] if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}")
    )


def era_of(request: Request, registry: Registry) -> tuple[dt.datetime | None, str]:
    """The day after the newest upload among the exact pins, and which pin that is."""
    dated = [(registry.uploaded(n, v), n) for n, v in request.pinned().items()]
    if not dated:
        return None, "no exact pin: today's releases"
    when, name = max(dated)
    day = dt.datetime.combine(when.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return day, f"{name}=={request.exact(name)}, uploaded {when.date()}"
