"""The matrix: stacks x (agent, fixed), each session installing its own server.

    nox                                     # every session, then the report
    nox -s "matrix(agent=False, fixed=True)"
    nox -R                                  # reuse environments, skip installs
    nox -s wheel                            # patched wheels into dist/

Sessions are thin: tests_impl() holds the logic, one helper per concern.
Versions live in pyproject.toml ([tool.stacks], [dependency-groups]).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from tests.harness.cells import BOOLS, STACKS, session_name, slug  # noqa: E402
from tests.harness.pythons import MissingPython, find_python27  # noqa: E402

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["matrix", "seed", "report"]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
RESULTS = ROOT / "results"
ARMS = [(agent, fixed) for fixed in BOOLS for agent in BOOLS]


def results_file(name, suffix=".json"):
    return RESULTS / (slug(name) + suffix)


# -- one helper per concern ------------------------------------------------


# This machine (and many CI images) export PYTHONDONTWRITEBYTECODE=1, and uv
# does not compile on install: every server start would then compile Flask
# from source (readiness 0.50 s instead of 0.19 s).  pip compiles anyway.
COMPILE = {"UV_COMPILE_BYTECODE": "1"}


def install_harness(session):
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"), env=COMPILE)


def install_node_client(session):
    session.run_install("npm", "ci", "--prefix", "app", "--no-audit", "--no-fund",
                        "--loglevel=error", external=True)


def gevent_websocket_wheel(session, stack, fixed, python=None):
    """Build (or take from cache) the verified wheel; None when installs are skipped."""
    args = ["python", "-m", "tests.harness.builds", "--stack", stack,
            "--arm", "fixed" if fixed else "vanilla"]
    if python:
        args += ["--python", str(python)]
    output = session.run_install(*args, silent=True)
    return output.strip().splitlines()[-1] if output else None


def server_requirements(stack, agent):
    pins = STACKS[stack]
    return [*pins["server"], *(pins["agent"] if agent else [])]


def py27_env(session, name):
    """A CPython 2.7 virtualenv beside the session's own, for the 2016 server."""
    try:
        python27 = find_python27()
    except MissingPython as exc:
        skip_or_fail(session, str(exc), name)
    env = Path(session.virtualenv.location) / "py27"
    session.run_install("python", "-m", "virtualenv", "--quiet", "--no-download",
                        "-p", python27, str(env))
    return env / "bin" / "python"


def skip_or_fail(session, reason, name):
    """Without Python 2.7 a local run skips the seed stack; CI must not."""
    if os.environ.get("CI"):
        session.error(reason)
    RESULTS.mkdir(exist_ok=True)
    record = {"session": name, "status": "skipped", "reason": reason}
    results_file(name).write_text(json.dumps(record) + "\n")
    session.skip(reason)


def install_server(session, stack, agent, fixed, name):
    """The environment of the server under test; returns its interpreter."""
    if stack == "today":
        python = Path(session.virtualenv.location) / "bin" / "python"

        def install(*args):
            session.install(*args, env=COMPILE)

        wheel = gevent_websocket_wheel(session, stack, fixed)
    else:
        python = py27_env(session, name)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-warn-script-location"]

        def install(*args):
            session.run_install(*pip, *args, external=True)

        wheel = gevent_websocket_wheel(session, stack, fixed, python=python)
    if wheel:
        install(*server_requirements(stack, agent))
        # A changed patch rebuilds the wheel under the same version
        # (0.10.1+fixed): only a forced reinstall refreshes a reused env.
        install("--no-deps", "--force-reinstall", wheel)
    return python


def tests_impl(session, stack, agent, fixed, *, harness_tests=False):
    name = session_name(stack, agent, fixed)
    install_harness(session)
    install_node_client(session)
    server_python = install_server(session, stack, agent, fixed, name)
    paths = ["tests/test_cells.py", "tests/test_app.py"]
    if harness_tests:
        paths += ["tests/test_model.py", "tests/test_builds.py"]
    session.run(
        "pytest", *paths, "--stack", stack, "--agent" if agent else "--no-agent",
        "--fixed" if fixed else "--no-fixed", "--server-python", str(server_python),
        "--results", str(results_file(name)),
        "--junitxml", str(results_file(name, ".junit.xml")),
        "--server-logs", str(results_file(name, ".logs")),
        *session.posargs,
    )


# -- sessions ----------------------------------------------------------------


@nox.session(python=None)
@nox.parametrize(("agent", "fixed"), ARMS)
def matrix(session, agent, fixed):
    """Today's stack on the interpreter nox runs on."""
    tests_impl(session, "today", agent, fixed, harness_tests=fixed and not agent)


@nox.session(python=None)
@nox.parametrize(("agent", "fixed"), ARMS)
def seed(session, agent, fixed):
    """The 2016 stack: the server runs on CPython 2.7, the harness on this Python."""
    tests_impl(session, "seed", agent, fixed, harness_tests=fixed and not agent)


@nox.session(python=None)
def report(session):
    """Merge every session's results into the observations table and report/."""
    session.install("packaging")
    session.run("python", "-m", "tests.harness.report", "--results", str(RESULTS),
                "--out", str(ROOT / "report"), *session.posargs)


@nox.session(python=None, default=False)
def wheel(session):
    """Write the patched gevent-websocket wheels to dist/ for users."""
    install_harness(session)
    dist = ROOT / "dist"
    session.run("python", "-m", "tests.harness.builds", "--stack", "today", "--arm", "fixed",
                "--dest", str(dist))
    try:
        find_python27()
    except MissingPython as exc:
        session.warn(f"0.9.5+fixed (CPython 2.7) not built: {exc}")
        return
    session.run("python", "-m", "tests.harness.builds", "--stack", "seed", "--arm", "fixed",
                "--python", str(py27_env(session, "wheel")), "--dest", str(dist))


@nox.session(python=None, default=False)
def lint(session):
    """ruff on the harness; app/ is checked for Python 2.7 syntax by the seed sessions."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", "noxfile.py", "tests")
