"""The registry's view of a release: whether it exists, when it was uploaded, and which
Pythons its files admit (Requires-Python, wheel tags)."""

from __future__ import annotations

import datetime as dt
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..builds import REGISTRY_JSON, BuildError, registry_releases
from ._errors import StackError

Json = dict[str, Any]  # a registry file entry, a results document
# Every CPython X.Y a stack can name, oldest first.
PYTHONS = ["2.7"] + [f"3.{n}" for n in range(6, 15)]
LOOKUP_TIMEOUT = 30  # s per existence check: a HEAD request, no body
LOOKUPS_AT_ONCE = 8  # a compiled file names dozens of packages


class Registry:
    """The registry's release lists (its JSON), read once per project per run."""

    def __init__(self) -> None:
        self.releases: dict[str, dict[str, list[Json]]] = {}
        self.known: dict[str, bool] = {}  # canonical name -> on the registry

    def exist(self, names: Iterable[str]) -> dict[str, bool]:
        """{name: whether the registry has the project}: a HEAD request each (a release
        list can be megabytes), a few at a time, each asked once per run."""
        keys = {canonicalize_name(n) for n in names}
        wanted = [k for k in keys if k not in self.known and k not in self.releases]
        with ThreadPoolExecutor(LOOKUPS_AT_ONCE) as pool:
            self.known.update(zip(wanted, pool.map(_on_registry, wanted), strict=True))
        return {k: k in self.releases or self.known[k] for k in keys}

    def files(self, name: str) -> dict[str, list[Json]]:
        key = canonicalize_name(name)
        if key not in self.releases:
            try:
                self.releases[key] = registry_releases(key)
            except BuildError as exc:
                raise StackError(f"{exc}; check the network or the name {name!r}") from None
            except Exception as exc:  # noqa: BLE001  404: no such project
                raise StackError(
                    f"{name}: not on the registry ({exc!r}); check the spelling"
                ) from None
        return self.releases[key]

    def check(self, name: str, version: str) -> list[Json]:
        files = self.files(name)
        match = [v for v in files if same_version(v, version)]
        if not match or not files[match[0]]:
            newest = _newest(files)
            raise StackError(
                f"{name}=={version} does not exist on the registry (its releases "
                f"run to {newest}); pin a release it has, e.g. {name}=={newest}"
            )
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
            usable = [
                f
                for f in files
                if not f.get("yanked")
                and _time(f) < before
                and (python is None or admits(f.get("requires_python"), python))
            ]
            if usable and not v.is_prerelease and (best is None or v > best):
                best = v
        return str(best) if best else None


def _on_registry(name: str) -> bool:
    url = REGISTRY_JSON.format(project=name)
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=LOOKUP_TIMEOUT
        ):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise StackError(
            f"{url}: the registry answered {exc.code}; retry, or check the network"
        ) from None
    except OSError as exc:
        raise StackError(f"cannot reach the registry ({url}: {exc!r}); check the network") from None


def same_version(a: str, b: str) -> bool:
    """Whether two version strings name the same release (1.0 and 1.0.0 do)."""
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


def admits(requires_python: str | None, python: str) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(
            python + ".0", prereleases=True
        ) or SpecifierSet(requires_python).contains(python, prereleases=True)
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
            if not (
                m and tag.abi != "none" and "linux" in tag.platform and "x86_64" in tag.platform
            ):
                continue
            if tag.abi == "abi3":
                abi3.append(f"{m[1]}.{m[2]}")
            else:
                found.add(f"{m[1]}.{m[2]}")
    if abi3:
        floor = min(abi3, key=python_key)
        found |= {v for v in PYTHONS if python_key(v) >= python_key(floor)}
    return found or None


def python_key(version: str) -> tuple[int, int]:
    """X.Y as numbers, so that 3.10 sorts after 3.9."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)
