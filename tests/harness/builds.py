"""Verified, reproducible wheels of gevent-websocket, vanilla or patched.

The pins live in pyproject.toml (``[tool.stacks.<stack>].gevent-websocket``).
The sdist is fetched with pip, checked against the pinned sha256 on every use,
optionally patched with the series in ``patches/gevent-websocket/<version>/``
(whatthepatch, exact context, no fuzz) and built with ``pip wheel`` by the
interpreter that will run it.  Wheels are cached under ``.cache/wheels/<key>/``.

CLI::

    python -m tests.harness.builds --stack today|seed|deploy --build vanilla|patched \
        [--python PATH] [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from packaging.version import Version

# [tool.stacks], bases resolved (deploy builds today's pin); the patched build's label
from .cells import PATCHED_LABEL, STACKS, build_name, build_version
from .paths import CACHE, ROOT

PATCHES = ROOT / "patches" / "gevent-websocket"
PROJECT = "gevent-websocket"
# A session's 2.7 env that tests may build in (the builds session's), instead of their own.
PY27_BUILD_ENV = "PY27_BUILD_ENV"

REGISTRY_JSON = "https://pypi.org/pypi/{project}/json"
DOWNLOAD_TIMEOUT = 300
BUILD_TIMEOUT = 600
PROBE_TIMEOUT = 60
# Wheel timestamps come from here, so the same inputs give the same bytes.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest a zip can say
# Bump when the way a wheel is made changes, so old cache entries are not reused.
BUILDER_REVISION = "1"
# This machine (and many CI images) export PYTHONDONTWRITEBYTECODE=1, and uv
# does not compile on install: every server start would then compile Flask
# from source (readiness 0.50 s instead of 0.19 s).  pip compiles anyway.
# Here, not in envs.py, because a user stack's env (userstack/_env.py) runs without nox.
COMPILE: dict[str, str | None] = {"UV_COMPILE_BYTECODE": "1"}

HOW_TO_GET_TOOLS = "run it inside a nox session, which installs the test dependency group"
# setup.py reads the version from the package; the label is appended here.
VERSION_LINE = "version = __import__('geventwebsocket').get_version()\n"


# How fetch_verified_sdist gets an sdist: (project, version, destination directory).
Download = Callable[[str, str, Path], None]


class BuildError(RuntimeError):
    """A build could not be made or trusted; nothing was cached or installed."""


def stack_pin(stack: str) -> dict[str, str]:
    """``{"version", "sha256", "python"}`` of a stack's gevent-websocket pin."""
    if stack not in STACKS:
        raise BuildError(f"unknown stack {stack!r}; pyproject.toml has {sorted(STACKS)}")
    pin = STACKS[stack][PROJECT]
    return {"version": pin["version"], "sha256": pin["sha256"], "python": STACKS[stack]["python"]}


def _run(
    cmd: list[str], what: str, timeout: int, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} timed out after {timeout}s: {' '.join(cmd)}") from None
    except OSError as exc:
        raise BuildError(f"{what} could not start {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}: {tail}")
    return proc


def _require_module(name: str, why: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise BuildError(
            f"{name} is not importable in {sys.executable} (needed to {why}); {HOW_TO_GET_TOOLS}"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(stack: str, *, sha256: str | None = None, cache: Path | None = None) -> Path:
    """The stack's pinned sdist, downloaded once and verified on every call.

    ``sha256`` overrides the pin (tests use it to prove a mismatch is caught).
    """
    pin = stack_pin(stack)
    return fetch_verified_sdist(PROJECT, pin["version"], sha256 or pin["sha256"], cache=cache)


def fetch_verified_sdist(
    project: str,
    version: str,
    expected: str,
    *,
    cache: Path | None = None,
    download: Download | None = None,
) -> Path:
    """``<cache>/sdists/<project>-<version>.tar.gz``, downloaded once, verified on every call.

    ``download(project, version, dest_dir)`` fetches the file (default: pip
    download); nothing that fails the sha256 check is kept.
    """
    sdists = Path(cache or CACHE) / "sdists"
    cached = sdists / f"{project}-{version}.tar.gz"
    if cached.exists():
        actual = _sha256(cached)
        if actual != expected:
            raise BuildError(
                f"sha256 mismatch for {cached}: expected {expected}, actual {actual}; "
                f"delete {cached} to download it again, or check the pin in pyproject.toml"
            )
        return cached

    with tempfile.TemporaryDirectory(prefix="sdist-") as tmp:
        (download or _pip_download)(project, version, Path(tmp))
        got = list(Path(tmp).iterdir())
        if len(got) != 1 or not got[0].name.endswith(".tar.gz"):
            raise BuildError(
                f"downloading {project} {version} gave {[p.name for p in got]}, "
                "expected one .tar.gz"
            )
        actual = _sha256(got[0])
        if actual != expected:
            raise BuildError(
                f"sha256 mismatch for downloaded {got[0].name}: expected {expected}, "
                f"actual {actual}; it was not cached: check the pin in pyproject.toml"
            )
        sdists.mkdir(parents=True, exist_ok=True)
        # Same filesystem as the cache, so the final rename is atomic.
        fd, staged = tempfile.mkstemp(dir=sdists, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(got[0], staged)
        os.replace(staged, cached)
    return cached


def _pip_download(project: str, version: str, dest: Path) -> None:
    _require_module("pip", "download the sdist")
    # pip reads the sdist's metadata by running its setup.py; with our own
    # setuptools that takes half the time of an isolated build env.
    _require_module("setuptools", "read the sdist's metadata")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            f"{project}=={version}",
            "-d",
            str(dest),
        ],
        f"downloading {project} {version}",
        DOWNLOAD_TIMEOUT,
    )


def registry_releases(project: str, index: str = REGISTRY_JSON) -> dict[str, list[dict[str, Any]]]:
    """``{version: [file, ...]}`` from the registry's own JSON metadata (PEP 691 fields:
    filename, url, digests.sha256, packagetype, requires_python, yanked)."""
    url = index.format(project=project)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            data = json.load(response)
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read the registry's release list {url}: {exc!r}") from None
    for files in data["releases"].values():
        for f in files:
            f["url"] = urllib.parse.urljoin(url, f["url"])  # mirrors give relative URLs
    releases: dict[str, list[dict[str, Any]]] = data["releases"]
    return releases


def registry_download(files: list[dict[str, Any]]) -> Download:
    """A ``download`` for :func:`fetch_verified_sdist` that takes the sdist from ``files``.

    Old sdists cannot go through ``pip download``: pip 26 on Python 3 runs their
    Python-2-only setup.py to read metadata, and pip 20.3 on 2.7 stops on
    ``assert req.link is not None``.  The sha256 is checked by the caller.
    """

    def download(project: str, version: str, dest: Path) -> None:
        sdists = [
            f for f in files if f["packagetype"] == "sdist" and f["filename"].endswith(".tar.gz")
        ]
        if len(sdists) != 1:
            raise BuildError(
                f"the registry has {len(sdists)} .tar.gz sdists of {project} "
                f"{version} ({[f['filename'] for f in files] or 'no files'})"
            )
        try:
            with urllib.request.urlopen(sdists[0]["url"], timeout=DOWNLOAD_TIMEOUT) as r:
                (dest / sdists[0]["filename"]).write_bytes(r.read())
        except OSError as exc:
            raise BuildError(f"downloading {sdists[0]['url']}: {exc!r}") from None

    return download


def series(patches_dir: Path) -> list[Path]:
    """The patch series of one gevent-websocket release, in the order it applies."""
    patches = sorted(patches_dir.glob("*.patch"), key=lambda p: p.name)
    if not patches:
        raise BuildError(f"no *.patch files in {patches_dir}")
    return patches


def _series_hash(patches: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in patches:
        data = p.read_bytes()
        h.update(f"{p.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _probe_python(python: str) -> str:
    """major.minor of ``python``, after checking it has what ``pip wheel`` needs."""
    if python == sys.executable:
        missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m) is None]
        mm = f"{sys.version_info[0]}.{sys.version_info[1]}"
    else:
        # Valid on Python 2.7 and 3.x.
        code = (
            "import sys\n"
            "missing = []\n"
            "for m in ('pip', 'setuptools'):\n"
            "    try:\n"
            "        __import__(m)\n"
            "    except ImportError:\n"
            "        missing.append(m)\n"
            "try:\n"
            "    import setuptools.command.bdist_wheel\n"
            "except ImportError:\n"
            "    try:\n"
            "        import wheel.bdist_wheel\n"
            "    except ImportError:\n"
            "        missing.append('wheel')\n"
            "sys.stdout.write('%d.%d %s\\n' % (sys.version_info[0], sys.version_info[1],"
            " ','.join(missing)))\n"
        )
        out = _run([python, "-c", code], f"probing {python}", PROBE_TIMEOUT).stdout.split()
        mm, missing = out[0], (out[1].split(",") if len(out) > 1 else [])
    if missing:
        raise BuildError(
            f"{python} lacks {', '.join(missing)}, needed to build a wheel; "
            + (
                HOW_TO_GET_TOOLS
                if python == sys.executable
                else "make it with `python -m virtualenv -p <python> <dir>` (virtualenv<20.22 "
                "seeds pip, setuptools and wheel) or pip install them into it"
            )
        )
    return mm


def _extract(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pre-3.10.12 / 3.11.4: refuse anything that could escape dest
            for m in tar.getmembers():
                if (
                    m.name.startswith("/")
                    or ".." in Path(m.name).parts
                    or not (m.isfile() or m.isdir())
                ):
                    raise BuildError(f"unsafe member {m.name!r} in {sdist}")
            tar.extractall(dest)
    roots = [p.parent for p in dest.glob("*/setup.py")]
    if len(roots) != 1:
        raise BuildError(f"{sdist} does not hold exactly one <dir>/setup.py")
    return roots[0]


def _apply_series(src: Path, patches: Sequence[Path]) -> None:
    _require_module("whatthepatch", "apply the patches")
    import whatthepatch
    from whatthepatch.exceptions import HunkApplyException, WhatThePatchException

    for patch in patches:
        try:
            parsed = whatthepatch.parse_patch(patch.read_text(encoding="utf-8"))
            diffs = [d for d in parsed if d.changes]
        except WhatThePatchException as exc:
            raise BuildError(f"{patch}: cannot be parsed: {exc}") from None
        if not diffs:
            raise BuildError(f"{patch}: holds no hunks")
        for diff in diffs:
            target = diff.header.new_path
            path = src / target
            if (
                diff.header.old_path != target
                or Path(target).is_absolute()
                or ".." in Path(target).parts
                or not path.is_file()
            ):
                raise BuildError(
                    f"{patch}: only edits of existing files are supported, "
                    f"got {diff.header.old_path} -> {target}"
                )
            text = path.read_text(encoding="utf-8")
            # split("\n") rather than splitlines(): the latter also splits on
            # form feeds and friends, which would corrupt the file on write.
            lines = text.split("\n")
            trailing_newline = lines[-1] == ""
            if trailing_newline:
                lines.pop()
            try:
                # apply_diff checks every context and removed line at its exact
                # line number: no offset, no fuzz.
                new = whatthepatch.apply_diff(diff, lines)
            except HunkApplyException as exc:
                hunks = [ln for ln in diff.text.splitlines() if ln.startswith("@@")]
                header = hunks[exc.hunk - 1] if exc.hunk and exc.hunk <= len(hunks) else "?"
                raise BuildError(
                    f"patch {patch.name} does not apply to {target}: "
                    f"hunk #{exc.hunk} '{header}': {exc}"
                ) from None
            path.write_text("\n".join(new) + ("\n" if trailing_newline else ""), encoding="utf-8")


def _label_version(src: Path) -> None:
    setup_py = src / "setup.py"
    text = setup_py.read_text(encoding="utf-8")
    # Loud on purpose: a different setup.py means the label could silently go missing.
    if text.count(VERSION_LINE) != 1:
        raise BuildError(f"{setup_py} does not contain exactly one {VERSION_LINE.strip()!r}")
    labelled = VERSION_LINE.rstrip("\n") + f" + '+{PATCHED_LABEL}'\n"
    setup_py.write_text(text.replace(VERSION_LINE, labelled), encoding="utf-8")


def _pip_wheel(python: str, src: Path, out: Path) -> Path:
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONDONTWRITEBYTECODE="1")
    # --no-build-isolation and --no-index: build with the interpreter's own,
    # pinned setuptools/wheel and fetch nothing, so the result is repeatable.
    _run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        f"building the wheel with {python}",
        BUILD_TIMEOUT,
        env=env,
        cwd=src,
    )
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"pip wheel produced {[w.name for w in wheels]}, expected one wheel")
    return wheels[0]


def _cached_wheel(keydir: Path) -> Path | None:
    wheels = list(keydir.glob("*.whl")) if keydir.is_dir() else []
    return wheels[0] if len(wheels) == 1 else None


def build_wheel(
    stack: str,
    fixed: bool,
    python: str | None = None,
    *,
    patches_dir: Path | None = None,
    sha256: str | None = None,
    cache: Path | None = None,
) -> Path:
    """Path of the cached wheel of ``stack``'s gevent-websocket, built if needed.

    ``fixed`` applies the patch series and labels the version ``<version>+fixed``.
    ``python`` is the building interpreter (default: this one); it must match
    the stack's Python (``seed`` needs a 2.7 env with pip, setuptools, wheel).
    ``patches_dir``, ``sha256`` and ``cache`` are overrides for tests.
    """
    pin = stack_pin(stack)
    python = python or sys.executable
    cache = Path(cache or CACHE)
    sdist = fetch_sdist(stack, sha256=sha256, cache=cache)
    sdist_sha = sha256 or pin["sha256"]  # fetch_sdist has just verified it

    mm = _probe_python(python)
    if mm != pin["python"] and not mm.startswith(pin["python"] + "."):
        raise BuildError(
            f"stack {stack} needs Python {pin['python']} to build {PROJECT} {pin['version']}, "
            f"but {python} is {mm}; pass a matching interpreter (python= or --python)"
            + (", a 2.7 env with pip, setuptools and wheel" if pin["python"] == "2.7" else "")
        )

    patches = series(patches_dir or PATCHES / pin["version"]) if fixed else []
    return build_release_wheel(
        PROJECT, pin["version"], sdist, sdist_sha, python, mm, patches=patches, cache=cache
    )


def build_release_wheel(
    project: str,
    version: str,
    sdist: Path,
    sdist_sha: str,
    python: str,
    mm: str | None = None,
    *,
    patches: Sequence[Path] = (),
    cache: Path | None = None,
) -> Path:
    """Path of the cached wheel of ``project`` ``version`` built by ``python``, built if needed.

    ``sdist`` has been verified against ``sdist_sha``.  The cache key holds the
    version, the sdist's sha256, the patch series (``patches``: the build is
    labelled ``+fixed``) and the interpreter's major.minor (``mm``, probed if None).
    """
    cache = Path(cache or CACHE)
    mm = mm or _probe_python(python)
    fixed = bool(patches)
    label = build_version(version, fixed)
    key = hashlib.sha256(
        "\0".join(
            [
                BUILDER_REVISION,
                label,
                sdist_sha,
                "fixed" if fixed else "vanilla",
                _series_hash(patches) if fixed else "",
                mm,
            ]
            + ([project] if project != PROJECT else [])
        ).encode()
    ).hexdigest()[:16]
    wheels = cache / "wheels"
    prefix = "" if project == PROJECT else f"{project}-"
    keydir = wheels / f"{prefix}{label}-py{mm}-{key}"
    hit = _cached_wheel(keydir)
    if hit:
        return hit

    with tempfile.TemporaryDirectory(prefix="build-") as tmp:
        src = _extract(sdist, Path(tmp) / "src")
        if fixed:
            _apply_series(src, patches)
            _label_version(src)
        built = _pip_wheel(python, src, Path(tmp) / "out")
        got = parse_wheel_filename(built.name)[1]
        if got != Version(label):
            raise BuildError(f"{built.name} has version {got}, expected {label}")

        wheels.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=wheels, prefix=".tmp-"))
        try:
            shutil.copy2(built, staging / built.name)
            if keydir.exists():  # a broken entry: replace it
                shutil.rmtree(keydir)
            try:
                os.rename(staging, keydir)
            except OSError:
                if _cached_wheel(keydir) is None:  # not a concurrent builder winning
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    wheel = _cached_wheel(keydir)
    if wheel is None:
        raise BuildError(f"{keydir} holds no single wheel after the build; delete it and rerun")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.builds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", required=True, choices=sorted(STACKS))
    parser.add_argument("--build", required=True, choices=[build_name(f) for f in (False, True)])
    parser.add_argument("--python", help="building interpreter (default: this one)")
    parser.add_argument("--dest", type=Path, help="also copy the wheel into this directory")
    args = parser.parse_args(argv)
    try:
        wheel = build_wheel(args.stack, args.build == build_name(True), args.python)
    except BuildError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    if args.dest:
        args.dest.mkdir(parents=True, exist_ok=True)
        wheel = Path(shutil.copy2(wheel, args.dest / wheel.name))
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
