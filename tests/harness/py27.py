"""CPython 2.7 environments: a virtualenv, a wheelhouse, pip from that wheelhouse only.

pip 20 on CPython 2.7 reads and parses the registry's index pages on every install:
~6 s of a seed session's ~8 s install phase (tests/bench/matrix_time).  From a local
wheelhouse with --no-index the same install takes ~1.5 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nox

from tests.harness.locks import exclusive
from tests.harness.paths import CACHE

WHEELHOUSES = CACHE / "wheelhouse"


def py27_env(session: nox.Session, python27: str, where: Path | None = None) -> Path:
    """A virtualenv of ``python27`` beside the session's own (or at ``where``); its python."""
    env = where or Path(session.virtualenv.location) / "py27"
    session.run_install(
        "python", "-m", "virtualenv", "--quiet", "--no-download", "-p", python27, str(env)
    )
    return env / "bin" / "python"


def py27_wheelhouse(
    session: nox.Session, python: Path, name: str, pins: list[str], *pip_args: str
) -> Path:
    """Every wheel of ``pins`` (``pip_args``: more options of `pip wheel`), fetched once
    into .cache/; keyed by the pins, so a changed pin makes a new wheelhouse."""
    key = hashlib.sha256("\n".join(["py2.7", *pins]).encode()).hexdigest()[:16]
    house = WHEELHOUSES / f"{name}-py2.7-{key}"
    if house.is_dir():
        return house
    with exclusive(session, house.name):  # parallel seed sessions: one fetch, not four
        if not house.is_dir():
            partial = house.with_name(f"{house.name}.partial-{os.getpid()}")
            try:
                session.run_install(
                    str(python),
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--wheel-dir",
                    str(partial),
                    *pip_args,
                    *pins,
                    external=True,
                )
                if partial.is_dir():  # not under `nox --no-install`, which skips the fetch
                    partial.rename(house)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return house


def pip27_install(session: nox.Session, python: Path, house: Path, *args: str) -> None:
    """pip install into a 2.7 env from ``house`` only (see py27_wheelhouse)."""
    session.run_install(
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--no-index",
        "--find-links",
        str(house),
        *args,
        external=True,
    )
