"""The gevent-websocket builder: real downloads, real patches, real wheels.

The seed stack needs a CPython 2.7: without one these tests skip, or fail
under CI (tests/harness/missing.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
import whatthepatch
from packaging.requirements import Requirement

from tests.harness import builds
from tests.harness.builds import (
    PY27_BUILD_ENV,
    BuildError,
    build_wheel,
    fetch_sdist,
    stack_pin,
)
from tests.harness.missing import missing, skip_or_fail
from tests.harness.paths import ROOT
from tests.harness.pythons import MissingPython, find_python27

# Every test here downloads or builds: the `builds` session runs them, not `unit`.
pytestmark = pytest.mark.builds

STACKS = ["today", "seed"]
GEVENT = {"gevent", "greenlet", "zope.event", "zope.interface"}
TIMEOUT = 300


def _virtualenv(interpreter: str, dest: Path) -> Path:
    """A fresh env seeded by virtualenv<20.22 (2.7: pip 20.3.4, setuptools 44, wheel 0.37)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "virtualenv",
            "-q",
            "--no-download",
            "--no-periodic-update",
            "-p",
            interpreter,
            str(dest),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return dest / "bin" / "python"


@pytest.fixture(scope="session")
def python27() -> str:
    try:
        return find_python27()
    except MissingPython as exc:
        skip_or_fail(missing(exc.what, "the seed stack's build", exc.how), pytest.skip, pytest.fail)


@pytest.fixture(scope="session")
def py27_build_env(python27, tmp_path_factory) -> str:
    made = os.environ.get(PY27_BUILD_ENV)  # by `nox -s builds`; absent after a first `-R`
    if made and Path(made).exists():
        return made
    try:
        return str(_virtualenv(python27, tmp_path_factory.mktemp("py27") / "env"))
    except subprocess.CalledProcessError as exc:
        reason = missing(
            f"no 2.7 env from virtualenv ({exc.stderr.strip()[-500:]})",
            "the seed stack's build",
            "install `virtualenv<20.22` (the builder group): later releases cannot make 2.7 envs",
        )
        skip_or_fail(reason, pytest.skip, pytest.fail)


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def python(stack, request) -> str | None:
    """The building interpreter for the stack (None: this one)."""
    return request.getfixturevalue("py27_build_env") if stack == "seed" else None


@pytest.fixture
def private_cache(tmp_path) -> Path:
    """An empty wheel cache holding a copy of both verified sdists (no re-download)."""
    (tmp_path / "sdists").mkdir()
    for name in STACKS:
        shutil.copy2(fetch_sdist(name), tmp_path / "sdists")
    return tmp_path


def _wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith("geventwebsocket/")}


def _wheel_version(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(z.read(meta).decode())["Version"]


def _sdist_files(sdist: Path) -> dict[str, bytes]:
    files = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            inner = member.name.partition("/")[2]
            if member.isfile() and inner.startswith("geventwebsocket/"):
                files[inner] = tar.extractfile(member).read()
    return files


def _patch_targets(version: str) -> set[str]:
    return {
        diff.header.new_path
        for patch in sorted((builds.PATCHES / version).glob("*.patch"))
        for diff in whatthepatch.parse_patch(patch.read_text())
        if diff.changes
    }


def _server_pins(stack: str) -> list[str]:
    return builds.STACKS[stack]["server"]


def _wheels_in(cache: Path) -> list[Path]:
    wheels = cache / "wheels"
    return list(wheels.iterdir()) if wheels.exists() else []


def test_vanilla_wheel_is_the_sdist(stack, python):
    pin = stack_pin(stack)
    wheel = build_wheel(stack, False, python)
    assert _wheel_version(wheel) == pin["version"]
    assert wheel.name.endswith("-py2-none-any.whl" if stack == "seed" else "-py3-none-any.whl")
    sdist_files = _sdist_files(fetch_sdist(stack))
    assert "geventwebsocket/handler.py" in sdist_files
    assert _wheel_files(wheel) == sdist_files


def test_fixed_wheel_is_labelled_and_differs_only_in_patched_files(stack, python):
    pin = stack_pin(stack)
    vanilla, fixed = build_wheel(stack, False, python), build_wheel(stack, True, python)
    assert _wheel_version(fixed) == f"{pin['version']}+fixed"
    assert f"-{pin['version']}+fixed-" in fixed.name
    old, new = _wheel_files(vanilla), _wheel_files(fixed)
    assert old.keys() == new.keys()
    changed = {name for name in old if old[name] != new[name]}
    assert changed == _patch_targets(pin["version"])
    assert "geventwebsocket/handler.py" in changed


def test_gnu_patch_agrees_with_the_builder(stack, python, tmp_path):
    """Cross-check: `patch -p1` (no fuzz) applies the series to the same result."""
    patch = shutil.which("patch")
    if not patch:
        pytest.skip("GNU patch is not installed")
    pin = stack_pin(stack)
    src = builds._extract(fetch_sdist(stack), tmp_path)
    for series in sorted((builds.PATCHES / pin["version"]).glob("*.patch")):
        for extra in (["--dry-run"], []):
            subprocess.run(
                [patch, "-p1", "-F0", "--batch", "-i", str(series), *extra],
                cwd=src,
                check=True,
                capture_output=True,
                timeout=60,
            )
    patched = {
        str(p.relative_to(src)): p.read_bytes() for p in (src / "geventwebsocket").rglob("*.py")
    }
    assert patched == _wheel_files(build_wheel(stack, True, python))


def test_fixed_wheel_installs_and_imports(stack, tmp_path, request):
    pin = stack_pin(stack)
    if stack == "seed":
        build_python = request.getfixturevalue("py27_build_env")
        env_python = _virtualenv(request.getfixturevalue("python27"), tmp_path / "env")
    else:
        build_python = None
        env_python = _virtualenv(sys.executable, tmp_path / "env")
    wheel = build_wheel(stack, True, build_python)
    # Imports need gevent: install the stack's own pins of it, nothing unpinned.
    gevent = [r for r in _server_pins(stack) if Requirement(r).name in GEVENT]
    pip = [
        str(env_python),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=TIMEOUT)
    subprocess.run([*pip, *gevent], check=True, capture_output=True, timeout=TIMEOUT)
    probe = (
        "import geventwebsocket.handler as h; "
        "assert hasattr(h.WebSocketHandler, '_websocket_start_response'); "
        "print(h.__file__)"
    )
    out = subprocess.run(
        [str(env_python), "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert str(tmp_path / "env") in out
    show = subprocess.run(
        [str(env_python), "-m", "pip", "show", "gevent-websocket"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert f"Version: {pin['version']}+fixed" in show.splitlines()


def test_broken_patch_names_patch_target_and_hunk(private_cache, tmp_path):
    version = stack_pin("today")["version"]
    patches = tmp_path / "patches"
    shutil.copytree(builds.PATCHES / version, patches)
    first = patches / "0001-run-websocket-iterate-and-close.patch"
    text = first.read_text()
    context = "             self.server.clients[self.client_address] = Client(\n"
    assert text.count(context) == 1
    first.write_text(text.replace(context, context.replace("Client(", "NotClient(")))

    with pytest.raises(BuildError) as err:
        build_wheel("today", True, patches_dir=patches, cache=private_cache)
    message = str(err.value)
    assert first.name in message
    assert "geventwebsocket/handler.py" in message
    assert "hunk #1" in message and "@@ -49,7 +49,15 @@" in message
    assert "NotClient(" in message  # the line that does not match
    assert _wheels_in(private_cache) == []


def _wrong_checksum_error(fixed: bool, cache: Path, wrong: str) -> str:
    """The build's error for today's sdist against ``wrong``; no wheel is left behind."""
    with pytest.raises(BuildError) as err:
        build_wheel("today", fixed, sha256=wrong, cache=cache)
    message = str(err.value)
    assert f"expected {wrong}" in message and f"actual {stack_pin('today')['sha256']}" in message
    assert _wheels_in(cache) == []
    return message


def test_cached_sdist_with_wrong_checksum(private_cache):
    message = _wrong_checksum_error(False, private_cache, "0" * 64)
    version = stack_pin("today")["version"]
    assert str(private_cache / "sdists" / f"gevent-websocket-{version}.tar.gz") in message
    assert "delete" in message


def test_downloaded_sdist_with_wrong_checksum_is_not_kept(tmp_path):
    assert "check the pin" in _wrong_checksum_error(True, tmp_path, "f" * 64)
    assert [p for p in (tmp_path / "sdists").glob("*") if p.is_file()] == []


def test_second_build_comes_from_cache_and_a_patch_change_rebuilds(
    private_cache, tmp_path, monkeypatch
):
    version = stack_pin("today")["version"]
    patches = tmp_path / "patches"
    shutil.copytree(builds.PATCHES / version, patches)
    first = build_wheel("today", True, patches_dir=patches, cache=private_cache)
    before = first.stat()

    ran: list[list[str]] = []
    real_run = builds._run

    def spy(cmd, *args, **kwargs):
        ran.append(cmd)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(builds, "_run", spy)
    again = build_wheel("today", True, patches_dir=patches, cache=private_cache)
    assert again == first
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert ran == []  # not even a pip download

    # Same code, different patch bytes (its header): a new cache entry, the same wheel bytes.
    series = sorted(patches.glob("*.patch"))[-1]
    series.write_text("Reviewed-by: a test\n" + series.read_text())
    rebuilt = build_wheel("today", True, patches_dir=patches, cache=private_cache)
    assert rebuilt.parent != first.parent
    assert any("wheel" in cmd for cmd in ran)
    digest = [hashlib.sha256(w.read_bytes()).hexdigest() for w in (first, rebuilt)]
    assert digest[0] == digest[1], "same inputs must give a byte-identical wheel"
    assert len(_wheels_in(private_cache)) == 2  # no staging leftovers


def test_build_env_without_wheel_is_refused(python27, private_cache):
    probe = "import wheel"
    has_wheel = subprocess.run([python27, "-c", probe], capture_output=True, timeout=60)
    if has_wheel.returncode == 0:
        pytest.skip(f"{python27} has wheel installed")
    with pytest.raises(BuildError, match=r"lacks .*wheel.*virtualenv"):
        build_wheel("seed", False, python27, cache=private_cache)
    assert _wheels_in(private_cache) == []


def test_seed_needs_python27(private_cache):
    with pytest.raises(BuildError, match=r"needs Python 2\.7.* is 3\."):
        build_wheel("seed", False, cache=private_cache)
    assert _wheels_in(private_cache) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.harness.builds", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_cli_prints_the_wheel_and_copies_it(tmp_path):
    proc = _cli("--stack", "today", "--build", "patched", "--dest", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    printed = Path(proc.stdout.strip().splitlines()[-1])
    assert printed.parent == tmp_path and printed.exists()
    assert printed.read_bytes() == build_wheel("today", True).read_bytes()


def test_cli_reports_a_build_error_on_one_line():
    proc = _cli("--stack", "seed", "--build", "vanilla", "--python", sys.executable)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "2.7" in lines[0]
