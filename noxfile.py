"""The matrix: stacks x (agent, fixed), each session installing its own server.

    nox                                     # every session, then the report
    nox -s "matrix(agent=False, fixed=True)"
    nox -R                                  # reuse environments, skip installs
    nox -s wheel                            # patched wheels into dist/

Sessions are thin: tests_impl() holds the logic, one helper per concern.
Versions live in pyproject.toml ([tool.stacks], [dependency-groups]).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from tests.harness.cells import BOOLS, STACKS, session_name, slug  # noqa: E402
from tests.harness.pythons import MissingPython, find_python27  # noqa: E402

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
# "workflow" checks .github/workflows/matrix.yml (actionlint, zizmor, its job list,
# a local rehearsal of its fan-out): it runs last, after "report".
nox.options.sessions = ["matrix", "seed", "report", "workflow"]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# MATRIX_RESULTS moves the results elsewhere (relative to ROOT, or absolute); the
# workflow rehearsal in tests/test_workflow.py uses it to keep a second set apart.
RESULTS = ROOT / os.environ.get("MATRIX_RESULTS", "results")
# MATRIX_REPORT likewise for the report's output (the bench's own matrix run uses both).
REPORT = ROOT / os.environ.get("MATRIX_REPORT", "report")
ARMS = [(agent, fixed) for fixed in BOOLS for agent in BOOLS]
PYTEST_TERMINATE_TIMEOUT = 10.0  # s pytest gets to stop its servers after nox's SIGTERM


def results_file(name, suffix=".json"):
    return RESULTS / (slug(name) + suffix)


# -- one helper per concern ------------------------------------------------


# This machine (and many CI images) export PYTHONDONTWRITEBYTECODE=1, and uv
# does not compile on install: every server start would then compile Flask
# from source (readiness 0.50 s instead of 0.19 s).  pip compiles anyway.
COMPILE = {"UV_COMPILE_BYTECODE": "1"}


def install_harness(session):
    # Only what runs in every cell is worth compiling: compiling the builder's
    # tools too cost uv ~1.2 s of every cold session (pip compiles anyway).
    session.install(*nox.project.dependency_groups(PYPROJECT, "harness"), env=COMPILE)
    session.install(*nox.project.dependency_groups(PYPROJECT, "builder"))


def install_node_client(session):
    """npm ci into app/node_modules, unless it already holds this package-lock.json.

    The directory is shared by every session: reinstalling it for each cost
    0.5-0.8 s a session, and wiped it under any session still running node.
    """
    lock = ROOT / "app" / "package-lock.json"
    stamp = ROOT / "app" / "node_modules" / ".installed-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    if session.run_install("npm", "ci", "--prefix", "app", "--no-audit", "--no-fund",
                           "--loglevel=error", external=True):
        stamp.write_text(digest)


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


def py27_env(session, name, where=None):
    """A CPython 2.7 virtualenv beside the session's own (or at ``where``)."""
    try:
        python27 = find_python27()
    except MissingPython as exc:
        skip_or_fail(session, str(exc), name)
    env = Path(where or Path(session.virtualenv.location) / "py27")
    session.run_install("python", "-m", "virtualenv", "--quiet", "--no-download",
                        "-p", python27, str(env))
    return env / "bin" / "python"


def py27_wheelhouse(session, python, stack, pins=None, *pip_args):
    """Every wheel of the stack's 2.7 server (agent included), or of ``pins``, fetched
    once into .cache/ (``pip_args``: more options of `pip wheel`).

    pip 20 on CPython 2.7 reads and parses the registry's index pages on every
    install: ~6 s of a seed session's ~8 s install phase (tests/bench/matrix_time).
    From this directory with --no-index the same install takes ~1.5 s.  Keyed by
    the pins, so a changed pin makes a new wheelhouse.
    """
    pins = pins or server_requirements(stack, True)
    key = hashlib.sha256("\n".join(["py2.7", *pins]).encode()).hexdigest()[:16]
    house = ROOT / ".cache" / "wheelhouse" / f"{stack}-py2.7-{key}"
    if not house.is_dir():
        partial = house.with_name(f"{house.name}.partial-{os.getpid()}")
        try:
            session.run_install(str(python), "-m", "pip", "wheel", "--quiet",
                                "--disable-pip-version-check", "--wheel-dir", str(partial),
                                *pip_args, *pins, external=True)
            partial.rename(house)
        except OSError:  # a concurrent session made it first: same pins, same wheels
            pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return house


def skip_or_fail(session, reason, name):
    """Without Python 2.7 a local run skips the seed stack; CI must not."""
    if os.environ.get("CI"):
        session.error(reason)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"session": name, "status": "skipped", "reason": reason}
    results_file(name).write_text(json.dumps(record) + "\n")
    session.skip(reason)


def install_server(session, stack, agent, fixed, name):
    """The environment of the server under test; returns its interpreter.

    The wheel is force-reinstalled: a changed patch rebuilds it under the same
    version (0.10.1+fixed), which a reused environment would otherwise keep.
    """
    requirements = server_requirements(stack, agent)
    if STACKS[stack]["python"] == "3":  # today and deploy: the session's own venv
        wheel = gevent_websocket_wheel(session, stack, fixed)
        if wheel:
            session.install(*requirements, env=COMPILE)
            session.install("--no-deps", "--force-reinstall", wheel, env=COMPILE)
        return Path(session.virtualenv.location) / "bin" / "python"
    return install_py27_server(session, py27_env(session, name), stack, fixed, requirements)


def install_py27_server(session, python, stack, fixed, requirements):
    wheel = gevent_websocket_wheel(session, stack, fixed, python=python)
    if wheel:
        house = py27_wheelhouse(session, python, stack)
        pip27_install(session, python, house, "--force-reinstall", *requirements, wheel)
    return python


def pip27_install(session, python, house, *args):
    """pip install into a 2.7 env from a wheelhouse only (see py27_wheelhouse)."""
    session.run_install(str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "--no-warn-script-location",
                        "--no-index", "--find-links", str(house), *args, external=True)


def tests_impl(session, stack, agent, fixed, *, harness_tests=False, protocol_tests=False,
               reliability_tests=False):
    name = session_name(stack, agent, fixed)
    install_harness(session)
    install_node_client(session)
    server_python = install_server(session, stack, agent, fixed, name)
    paths = ["tests/test_cells.py", "tests/test_app.py"]
    if harness_tests:
        paths += ["tests/test_model.py", "tests/test_builds.py"]
    if protocol_tests:  # RFC 6455 and bad input, per arm (tests/test_protocol.py)
        paths += ["tests/test_protocol.py"]
    if reliability_tests:  # load, faults, interrupts: ~30 s, so two sessions only
        paths += ["tests/test_reliability.py"]
    if agent:  # the agent reaches nothing beyond loopback (audit hook, strace)
        paths += ["tests/test_no_network.py"]
    session.run(
        "pytest", *paths, "--stack", stack, "--agent" if agent else "--no-agent",
        "--fixed" if fixed else "--no-fixed", "--server-python", str(server_python),
        "--results", str(results_file(name)),
        "--junitxml", str(results_file(name, ".junit.xml")),
        "--server-logs", str(results_file(name, ".logs")),
        *session.posargs,
        # On Ctrl-C nox gives pytest 0.3 s, then SIGTERM (tests/conftest.py: servers
        # signalled, teardown runs), then only 0.2 s before SIGKILL: too short.
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


# -- sessions ----------------------------------------------------------------


@nox.session(python=None)
@nox.parametrize(("agent", "fixed"), ARMS)
def matrix(session, agent, fixed):
    """Today's stack on the interpreter nox runs on."""
    tests_impl(session, "today", agent, fixed, harness_tests=fixed and not agent,
               protocol_tests=not agent, reliability_tests=fixed)


@nox.session(python=None)
@nox.parametrize(("agent", "fixed"), ARMS)
def seed(session, agent, fixed):
    """The 2016 stack: the server runs on CPython 2.7, the harness on this Python."""
    tests_impl(session, "seed", agent, fixed, harness_tests=fixed and not agent)


# -- deploy: the same cells the way users deploy (issue 15) -------------------
# gunicorn with gevent-websocket's GeventWebSocketWorker, the agent started by
# `newrelic-admin run-program`, on today's pins plus [tool.stacks.deploy]'s own;
# the same verified wheel as the matrix, installed unchanged.  Opt-in: `nox -t ci`.


@nox.session(python=None, default=False, tags=["ci"])
@nox.parametrize(("agent", "fixed"), ARMS)
def deploy(session, agent, fixed):
    """Today's stack under gunicorn's gevent-websocket worker, agent by newrelic-admin."""
    name = session_name("deploy", agent, fixed)
    install_harness(session)
    install_node_client(session)
    server_python = install_server(session, "deploy", agent, fixed, name)
    paths = ["tests/test_cells.py", "tests/test_deploy.py"]  # the cells; stop and lifeline
    if fixed and not agent:  # the harness's own unit tests, once
        paths += ["tests/test_deploy_compare.py"]
    session.run(
        "pytest", *paths, "--stack", "deploy", "--agent" if agent else "--no-agent",
        "--fixed" if fixed else "--no-fixed", "--server-python", str(server_python),
        "--results", str(results_file(name)),
        "--junitxml", str(results_file(name, ".junit.xml")),
        "--server-logs", str(results_file(name, ".logs")),
        *session.posargs, terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


@nox.session(python=None)
def report(session):
    """Merge every session's results into the observations grid and report/."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "report"))
    session.run("python", "-m", "tests.harness.report", "--results", str(RESULTS),
                "--out", str(REPORT), *session.posargs)


@nox.session(python=None, default=False, tags=["ci"])
def page(session):
    """The report as readers see it: renderers on samples, report/index.html in Chromium.

    tests/test_report.py renders sample inputs; tests/test_report_page.py loads the page
    `nox -s report` wrote in headless Chromium (DOM, drill-down, console, screenshots).

    Apart from `report`: the page test needs Debian's chromium, which the GitHub report
    job does not have, and a browser failure must not mask the matrix's own verdict.
    Run it after `nox -s report`; in `nox -t ci` it follows the report session (noxfile order).
    """
    session.install(*nox.project.dependency_groups(PYPROJECT, "harness", "report", "page"))
    session.run("pytest", "tests/test_report.py", "tests/test_report_page.py",
                *session.posargs, env={"MATRIX_REPORT": str(REPORT)})


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


@nox.session(python=None)
def workflow(session):
    """The GitHub workflow: actionlint, zizmor, its jobs against `nox -l`, a local rehearsal."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "test", "workflow"))
    session.run("pytest", "tests/test_workflow.py", *session.posargs)


@nox.session(python=None, default=False)
def bench(session):
    """What the matrix costs: wall time (cold uv vs pip, warm), per cell, echo throughput.

    ~3 minutes on 2 cores; writes report/bench.json and report/bench.md.  Its nox
    runs use their own envdir, results and report under the session's directory.
    """
    load = ",".join(f"{v:.2f}" for v in os.getloadavg())  # before this session's own work
    install_harness(session)
    session.install(*nox.project.dependency_groups(PYPROJECT, "bench"), env=COMPILE)
    install_node_client(session)
    # Today's server with the agent, vanilla; the patched build beside it, first
    # on PYTHONPATH for the patched servers: the build is their only difference.
    python = install_server(session, "today", True, False, "bench")
    work = Path(session.virtualenv.location) / "work"
    patched = work / "patched-gevent-websocket"
    wheel = gevent_websocket_wheel(session, "today", True)
    if wheel:
        shutil.rmtree(patched, ignore_errors=True)
        session.install("--no-deps", "--target", str(patched), wheel)
    session.run("python", "-m", "tests.bench.run", "--python", str(python),
                "--patched-path", str(patched), "--work", str(work),
                "--nox", f"{shlex.quote(sys.executable)} -m nox", "--out", str(REPORT),
                "--load-before", load, *session.posargs)


# -- conformance (issue 14): Autobahn|Testsuite on every gevent-websocket arm ----

from tests.harness.conformance import ARMS as CONFORMANCE_ARMS  # noqa: E402

CONFORMANCE = PYPROJECT["tool"]["conformance"]


def install_wstest(session, where):
    """wstest in a CPython 2.7 virtualenv at ``where``: exactly the pinned packages.

    --no-deps: the pins are the whole environment (autobahntestsuite's sdist
    declares no dependencies, and nothing unpinned may come in).  wsaccel,
    ujson and Twisted compile once, into the wheelhouse.
    """
    pins = CONFORMANCE["wstest"]
    python = py27_env(session, "conformance", where)
    house = py27_wheelhouse(session, python, "wstest", pins, "--no-deps")
    pip27_install(session, python, house, "--no-deps", *pins)
    return where / "bin" / "wstest"


def conformance_server(session, arm, stack, fixed):
    """The server env of one arm, beside the session's; returns its interpreter."""
    where = Path(session.virtualenv.location) / "arms" / arm
    requirements = server_requirements(stack, False)
    if stack == "seed":
        python = py27_env(session, "conformance", where)
        return install_py27_server(session, python, stack, fixed, requirements)
    python = where / "bin" / "python"
    session.run_install("uv", "venv", "--quiet", "--allow-existing", "--python",
                        sys.executable, str(where), external=True)
    wheel = gevent_websocket_wheel(session, stack, fixed)
    if wheel:
        install = ["uv", "pip", "install", "--quiet", "--python", str(python)]
        session.run_install(*install, *requirements, env=COMPILE, external=True)
        session.run_install(*install, "--no-deps", "--reinstall", wheel, env=COMPILE,
                            external=True)
    return python


@nox.session(python=None, default=False, tags=["ci"])
def conformance(session):
    """Autobahn|Testsuite (wstest fuzzingclient, every case) on the four gevent-websocket arms.

    Writes results/conformance.json and Autobahn's HTML under report/conformance/<arm>/;
    fails if the patched 0.10.1 has a case (outside compression) that is not OK, or
    vanilla one that maps to no named defect.  2.5-3 minutes on 2 cores shared with other
    work (load 5-8), caches warm; the first run also builds wstest's wheels (~1.5 min).
    """
    try:
        find_python27()
    except MissingPython as exc:  # wstest and the seed stack need CPython 2.7
        if os.environ.get("CI"):
            session.error(str(exc))
        session.skip(str(exc))
    install_harness(session)
    wstest = install_wstest(session, Path(session.virtualenv.location) / "wstest")
    arms = [f"{arm}={conformance_server(session, arm, *axes)}"
            for arm, axes in CONFORMANCE_ARMS.items()]
    # The harness's own checks first: index.json parsing, the rule, the stall watchdog.
    session.run("pytest", "tests/test_conformance.py", "-q")
    session.run("python", "-m", "tests.harness.conformance", "--wstest", str(wstest),
                *(a for arm in arms for a in ("--arm", arm)),
                "--results", str(RESULTS / "conformance.json"),
                "--report", str(REPORT / "conformance"),
                "--logs", str(RESULTS / "conformance.logs"), *session.posargs,
                terminate_timeout=PYTEST_TERMINATE_TIMEOUT)


# -- history (issue 12): which upstream release changed a cell ------------------------
# One session per [tool.history.<package>] of pyproject.toml; tests/harness/history.py
# does the search, these helpers only build the server's base environment.

HISTORY = PYPROJECT["tool"].get("history", {})


def history_base_env(session, package, stack):
    """The stack's 2.7 server without `package`: each release of it is put first on the
    server's PYTHONPATH by the search, in a directory of its own."""
    if STACKS[stack]["python"] != "2.7":
        session.error(f"history({package}): stack {stack!r} runs on Python "
                      f"{STACKS[stack]['python']}; only 2.7 stacks are supported so far")
    python = py27_env(session, f"history({package})")
    house = py27_wheelhouse(session, python, stack)
    others = [r for r in server_requirements(stack, True)
              if canonicalize_name(Requirement(r).name) != canonicalize_name(package)]
    if canonicalize_name(package) != "gevent-websocket":
        others.append(gevent_websocket_wheel(session, stack, False, python=python))
    session.run_install(str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "--no-warn-script-location",
                        "--no-index", "--find-links", str(house), *filter(None, others),
                        external=True)
    return python


@nox.session(python=None, default=False)
@nox.parametrize("package", list(HISTORY), ids=list(HISTORY))
def history(session, package):
    """Which release of `package` changed a cell: bisection, proof, diff (report/history.md)."""
    install_harness(session)
    install_node_client(session)
    python = history_base_env(session, package, HISTORY[package]["stack"])
    session.run("python", "-m", "tests.harness.history", "--package", package,
                "--python", str(python), "--out", str(REPORT),
                "--work", str(Path(session.virtualenv.location) / "history"),
                terminate_timeout=PYTEST_TERMINATE_TIMEOUT)


@nox.session(python=None, default=False, tags=["ci"])
def history_unit(session):
    """The bisection on planted histories: fast, no servers."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "harness"))
    session.run("pytest", "tests/test_history.py", *session.posargs)
