"""Which releases of a package the atlas runs, and the registry facts behind each pick.

The rule (sentry-python's for its test matrix): of the releases that install on the
atlas's Pythons, the oldest, the highest of each major (of each minor on a 0.x line)
and the latest; yanked releases and pre-releases are skipped, except for a package
that publishes only pre-releases (OpenTelemetry's instrumentations, 0.NbM), whose
releases count, each 0.N taken as a minor line.  A pick's paired package (Flask's
Werkzeug, gevent's greenlet) is the newest release its Requires-Dist admits that was
uploaded before the day after the pick's (the era, as userstack/_era.py dates a pin),
else the first after it (gevent 1.1.0: no greenlet of its era has a wheel).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import io
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..records import from_dict, to_dict
from ..userstack._errors import StackError
from ..userstack._registry import Json, Registry, _time, admits, python_key, wheel_pythons
from ._axes import ATLAS_PYTHONS, BINARY

RULE = (
    "per axis, of the releases that install on CPython 2.7 or 3.6-3.13 (Requires-Python, "
    "CPython wheels), yanked ones and pre-releases skipped (unless the package publishes "
    "only pre-releases, then each 0.N is a minor line): the oldest, the highest of each "
    "major (of each minor on a 0.x line) and the latest; Flask is paired with the newest "
    "Werkzeug its Requires-Dist admits that was uploaded by the day after it (else the "
    "first after that installs), gevent so with greenlet"
)
LOOKUP_TIMEOUT = 60
LOOKUPS_AT_ONCE = 8


@dataclass
class Facts:
    """The registry's facts about one release, as plan.json keeps them."""

    version: str
    uploaded: str  # ISO time of its newest file
    requires_python: str | None
    yanked: bool
    pythons: list[str]  # the atlas's Pythons it installs on
    requires: list[str] = field(default_factory=list)  # its Requires-Dist (extras applied)

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Facts:
        return from_dict(cls, dict(data))


def installs_on(files: list[Json], binary: bool = False) -> list[str]:
    """The atlas's Pythons a release installs on: those its CPython wheels name (any, if
    it has none and is not ``binary``: pure Python) that every file's Requires-Python
    admits."""
    by_wheel = wheel_pythons(files)
    if by_wheel is None and binary:
        return []
    specs = {f.get("requires_python") for f in files} - {None, ""}
    return [
        p
        for p in ATLAS_PYTHONS
        if (by_wheel is None or p in by_wheel) and all(admits(s, p) for s in specs)
    ]


def facts(version: str, files: list[Json], binary: bool = False) -> Facts:
    specs = sorted({f.get("requires_python") or "" for f in files} - {""})
    return Facts(
        version=version,
        uploaded=max(_time(f) for f in files).isoformat(),
        requires_python=" or ".join(specs) or None,
        yanked=all(f.get("yanked") for f in files),
        pythons=installs_on(files, binary),
    )


def candidates(releases: Mapping[str, list[Json]], binary: bool = False) -> list[Facts]:
    """The releases the rule chooses from, oldest first: on the registry with files,
    not yanked, installable on an atlas Python; pre-releases only if all are."""
    found: list[tuple[Version, Facts]] = []
    for version, files in releases.items():
        try:
            v = Version(version)
        except InvalidVersion:
            continue
        if files:
            f = facts(version, files, binary)
            if not f.yanked and f.pythons:
                found.append((v, f))
    only_pre = all(v.is_prerelease for v, _ in found)
    return [f for v, f in sorted(found, key=lambda x: x[0]) if only_pre or not v.is_prerelease]


def line(v: Version) -> str:
    """The line a release is the highest of: its major, or its minor on a 0.x line."""
    return f"0.{v.minor}" if v.major == 0 else str(v.major)


def pick(versions: Iterable[str]) -> dict[str, list[str]]:
    """{version: why} the rule picks from ``versions`` (the candidates), oldest first."""
    ordered = sorted(versions, key=Version)
    why: dict[str, list[str]] = {}
    if not ordered:
        return why
    why.setdefault(ordered[0], []).append("oldest that installs")
    highest: dict[str, str] = {}
    for v in ordered:
        highest[line(Version(v))] = v
    for name, v in highest.items():
        why.setdefault(v, []).append(f"highest of {name}")
    why.setdefault(ordered[-1], []).append("latest")
    return {v: why[v] for v in ordered if v in why}


def era(uploaded: str) -> dt.datetime:
    """The day after an upload: what was released by then is of the pick's era."""
    day = dt.datetime.fromisoformat(uploaded).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def requires_dist(files: list[Json]) -> list[str] | None:
    """A release's Requires-Dist, from the core metadata of its smallest wheel: the
    registry's copy beside it (PEP 658), else the wheel's own METADATA, read by ranges;
    None when it has no wheel (old sdists: the registry has no metadata for them)."""
    wheels = sorted((f for f in files if f["filename"].endswith(".whl")), key=lambda f: f["size"])
    if not wheels:
        return None
    url = wheels[0]["url"]
    try:
        try:
            text = _get(url + ".metadata").decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            text = _wheel_metadata(url, wheels[0]["size"])
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise StackError(
            f"cannot read the metadata of {url} ({exc!r}); check the network"
        ) from None
    return email.parser.Parser().parsestr(text, headersonly=True).get_all("Requires-Dist") or []


def _get(url: str, first: int | None = None, last: int | None = None) -> bytes:
    headers = {"Range": f"bytes={first}-{last}"} if first is not None else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=LOOKUP_TIMEOUT) as response:
        body: bytes = response.read()
    return body


def _wheel_metadata(url: str, size: int) -> str:
    """The METADATA in a wheel on the registry, reading its zip index and that member only."""
    with zipfile.ZipFile(_Ranges(url, size)) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode("utf-8", "replace")


class _Ranges(io.RawIOBase):
    """A remote file read by HTTP ranges, a block at a time (zipfile seeks to its end)."""

    BLOCK = 64 * 1024

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.pos = url, size, 0
        self.blocks: dict[int, bytes] = {}

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self.pos + n)
        out = b""
        while self.pos < end:
            block = self.pos // self.BLOCK
            if block not in self.blocks:
                first = block * self.BLOCK
                self.blocks[block] = _get(self.url, first, min(self.size, first + self.BLOCK) - 1)
            chunk = self.blocks[block][self.pos - block * self.BLOCK : end - block * self.BLOCK]
            if not chunk:
                break
            out += chunk
            self.pos += len(chunk)
        return out


def applies(req: Requirement, extras: Iterable[str], pythons: Iterable[str]) -> bool:
    """Whether a requirement binds a release installed with ``extras`` on one of
    ``pythons`` (CPython on Linux)."""
    if req.marker is None:
        return True
    marker: Marker = req.marker
    return any(
        marker.evaluate(
            {
                "extra": extra,
                "python_version": p,
                "python_full_version": p + ".0",
                "platform_python_implementation": "CPython",
                "implementation_name": "cpython",
                "sys_platform": "linux",
                "platform_system": "Linux",
                "os_name": "posix",
            }
        )
        for p in pythons
        for extra in ("", *extras)
    )


def with_requires(f: Facts, dist: list[str] | None, extras: Iterable[str]) -> Facts:
    """``f`` with the Requires-Dist lines that bind it (extras and markers applied)."""
    reqs = [Requirement(r) for r in dist or []]
    f.requires = [str(r) for r in reqs if applies(r, extras, f.pythons)]
    return f


def paired(registry: Registry, pick: Facts, package: str) -> Facts | None:
    """The release of ``package`` paired with ``pick``: of those its Requires-Dist admits
    that install on one of its Pythons, the newest uploaded before the pick's era (a
    later one may break its ABI: gevent 20.9.0 with greenlet 3), else the first after."""
    spec = SpecifierSet()
    for r in map(Requirement, pick.requires):
        if canonicalize_name(r.name) == canonicalize_name(package):
            spec &= r.specifier
    usable = {}
    for version, files in registry.files(package).items():
        if files and not all(f.get("yanked") for f in files):
            f = facts(version, files, package in BINARY)
            if set(f.pythons) & set(pick.pythons):
                usable[version] = f
    admitted = sorted(spec.filter(usable, prereleases=None), key=Version)
    before = era(pick.uploaded)
    by_then = [v for v in admitted if dt.datetime.fromisoformat(usable[v].uploaded) < before]
    chosen = by_then[-1:] or admitted[:1]
    return usable[chosen[0]] if chosen else None


def lookup_requires(releases: Iterable[list[Json]]) -> list[list[str] | None]:
    """Requires-Dist of each release (its files), a few lookups at once."""
    with ThreadPoolExecutor(LOOKUPS_AT_ONCE) as pool:
        return list(pool.map(requires_dist, releases))


def span(pythons: Iterable[str]) -> str:
    """2.7-3.9 for a run of Pythons (the atlas's), the list otherwise."""
    ordered = sorted(pythons, key=python_key)
    if not ordered:
        return "no Python"
    run = list(ATLAS_PYTHONS[ATLAS_PYTHONS.index(ordered[0]) :][: len(ordered)])
    if run == ordered and len(ordered) > 1:
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(ordered)
