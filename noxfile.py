"""The matrix: stacks x (agent, fixed), each session installing its own server.

    nox                             # the main job: every cell, the protocol checks, the report
    nox -t ci                       # the test command: the main job and every other check
    nox -s "matrix(agent=False, fixed=True)"
    nox -R                          # reuse environments, skip installs
    nox -s serve -- --agent --rum   # the app by hand (prints the URL and the clients)
    nox -s wheel                    # patched wheels into dist/

Sessions are thin: tests_impl() holds the logic, one helper per concern.
Versions live in pyproject.toml ([tool.stacks], [dependency-groups]).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from tests.harness import records  # noqa: E402
from tests.harness.cells import (  # noqa: E402
    BOOLS,
    MAIN_STACKS,
    STACKS,
    build_name,
    checks_name,
    session_name,
    slug,
)
from tests.harness.conformance import TARGETS as CONFORMANCE_TARGETS  # noqa: E402
from tests.harness.pythons import MissingPython, find_python27  # noqa: E402
from tests.harness.records import SessionResults  # noqa: E402

nox.needs_version = ">=2026.10.20"  # --parallel, allow_parallel=
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
# Sessions run two at a time (`-j 1` for one at a time): one session's installs and
# server start-ups overlap another's waits.  Only those with allow_parallel=True do;
# "report" and "workflow" run alone, after every session defined above them.
nox.options.parallel = 2
# Plain `nox` is the main job: the sessions without default=False, in the order below.
# `nox -t ci` is the test command: every session tagged "ci", in the same order.
CI = ["ci"]

PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# MATRIX_RESULTS moves the results elsewhere (relative to ROOT, or absolute); the
# workflow rehearsal in tests/product/test_workflow.py uses it to keep a second set apart.
RESULTS = ROOT / os.environ.get("MATRIX_RESULTS", "results")
# MATRIX_REPORT likewise for the report's output (the bench's own matrix run uses both).
REPORT = ROOT / os.environ.get("MATRIX_REPORT", "report")
ARMS = [(agent, fixed) for fixed in BOOLS for agent in BOOLS]
PYTEST_TERMINATE_TIMEOUT = 10.0  # s pytest gets to stop its servers after nox's SIGTERM
LOCK_TIMEOUT = 900.0  # s a session waits for another's build of a shared file (bound)
# pytest-xdist workers of a main-job session (MATRIX_WORKERS sets it for every one).
# With two sessions at a time on 2 cores, the 8 cells of a session gain nothing from
# two workers of their own, which cost two more interpreters (nox -s bench: warm
# 46 s with, 41 s without, loaded machine); the sessions with the 23 protocol checks,
# the longest, do gain: only they get 2.
PROTOCOL_WORKERS = 2


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


@contextlib.contextmanager
def exclusive(session, name, timeout=LOCK_TIMEOUT):
    """A lock on this checkout's shared files, held across parallel sessions (`nox -j`)."""
    path = ROOT / ".cache" / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    session.error(f"{path} still locked after {timeout:.0f} s (bound): another "
                                  "nox session is stuck building it; stop it, or delete .cache/")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    with exclusive(session, "node_modules"):
        if stamp.is_file() and stamp.read_text() == digest:  # a parallel session made it
            return
        if session.run_install("npm", "ci", "--prefix", "app", "--no-audit", "--no-fund",
                               "--loglevel=error", external=True):
            stamp.write_text(digest)


def gevent_websocket_wheel(session, stack, fixed, python=None):
    """Build (or take from cache) the verified wheel; None when installs are skipped."""
    build = build_name(fixed)
    args = ["python", "-m", "tests.harness.builds", "--stack", stack, "--build", build]
    if python:
        args += ["--python", str(python)]
    with exclusive(session, f"wheel-{stack}-{build}"):  # one build, not one per parallel session
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
    if house.is_dir():
        return house
    with exclusive(session, house.name):  # parallel seed sessions: one fetch, not four
        if not house.is_dir():
            partial = house.with_name(f"{house.name}.partial-{os.getpid()}")
            try:
                session.run_install(str(python), "-m", "pip", "wheel", "--quiet",
                                    "--disable-pip-version-check", "--wheel-dir", str(partial),
                                    *pip_args, *pins, external=True)
                partial.rename(house)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return house


def skip_or_fail(session, reason, name):
    """Without Python 2.7 a local run skips the seed stack; CI must not."""
    if os.environ.get("CI"):
        session.error(reason)
    records.write(results_file(name), SessionResults(session=name, status="skipped",
                                                     reason=reason))
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


def workers(default):
    """pytest-xdist's -n: each cell and check has its own server on port 0, so they can
    run side by side (MATRIX_WORKERS, for every main-job session; 0: one at a time)."""
    count = int(os.environ.get("MATRIX_WORKERS", default))
    return ["-n", str(count)] if count > 0 else []


def tests_impl(session, stack, agent, fixed, paths, *, name=None, xdist=None):
    """pytest on ``paths`` against this arm's server; results under RESULTS/<name>.

    ``xdist``: the main job's default number of workers (MATRIX_WORKERS overrides it);
    None for the other checks, whose bounds and figures assume one test at a time.
    """
    claim = session_name(stack, agent, fixed)  # the arm, as the cells and the report name it
    name = name or claim
    install_harness(session)
    install_node_client(session)
    server_python = install_server(session, stack, agent, fixed, name)
    session.run(
        "pytest", *paths, *(workers(xdist) if xdist is not None else []),
        "--stack", stack, "--agent" if agent else "--no-agent",
        "--fixed" if fixed else "--no-fixed", "--server-python", str(server_python),
        "--session-name", name,
        "--results", str(results_file(name)),
        "--junitxml", str(results_file(name, ".junit.xml")),
        "--server-logs", str(results_file(name, ".logs")),
        *session.posargs,
        # On Ctrl-C nox gives pytest 0.3 s, then SIGTERM (tests/conftest.py: servers
        # signalled, teardown runs), then only 0.2 s before SIGKILL: too short.
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


def main_job(session, stack, agent, fixed):
    """The cells (with their positive controls) and, per arm of today's stack, the
    RFC 6455 / bad-input checks (tests/matrix/test_protocol.py)."""
    protocol = stack == "today" and not agent
    paths = ["tests/matrix/test_cells.py", *(["tests/matrix/test_protocol.py"] if protocol else [])]
    tests_impl(session, stack, agent, fixed, paths,
               xdist=PROTOCOL_WORKERS if protocol else 0)


def checks_paths(agent):
    """What `nox -t ci` adds per arm, beside its cells: the app on this arm's server, the
    harness's death stops the server (SIGKILL), the no-network proofs (the agent's arms)."""
    return ["tests/matrix/test_app.py", "tests/matrix/test_lifeline.py",
            *(["tests/matrix/test_no_network.py"] if agent else [])]


# -- sessions ----------------------------------------------------------------
# Sessions that write results come first; "report" runs after every one of them
# (it allows no parallel session beside it, so it starts once all above are done),
# then "workflow", whose rehearsal compares its own fan-out with that report.


@nox.session(python=None, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def matrix(session, agent, fixed):
    """Today's stack on the interpreter nox runs on."""
    main_job(session, "today", agent, fixed)


@nox.session(python=None, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def seed(session, agent, fixed):
    """The 2016 stack: the server runs on CPython 2.7, the harness on this Python."""
    main_job(session, "seed", agent, fixed)


# -- deploy: the same cells the way users deploy (issue 15) -------------------
# gunicorn with gevent-websocket's GeventWebSocketWorker, the agent started by
# `newrelic-admin run-program`, on today's pins plus [tool.stacks.deploy]'s own;
# the same verified wheel as the matrix, installed unchanged.  Opt-in: `nox -t ci`.


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def deploy(session, agent, fixed):
    """Today's stack under gunicorn's gevent-websocket worker, agent by newrelic-admin."""
    # the cells; gunicorn's stop and lifeline (master and worker)
    tests_impl(session, "deploy", agent, fixed, ["tests/matrix/test_cells.py", "tests/matrix/test_deploy.py"])


CHECK_ARMS = [nox.param(stack, agent, fixed,  # named by checks_name(): checks(seed, agent=..)
                        id=checks_name(stack, agent, fixed).partition("(")[2][:-1])
              for stack in MAIN_STACKS for agent, fixed in ARMS]


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("stack", "agent", "fixed"), CHECK_ARMS)
def checks(session, stack, agent, fixed):
    """Per arm, beside the cells: test_app, test_lifeline, the no-network proofs."""
    tests_impl(session, stack, agent, fixed, checks_paths(agent),
               name=checks_name(stack, agent, fixed))


# Alone (no parallel session beside it), as when sessions ran one at a time: its
# figures (fds, greenlets, threads back to their baseline) must not carry another
# session's load.  ~30 s each.
@nox.session(python=None, default=False, tags=CI)
@nox.parametrize("agent", BOOLS)
def reliability(session, agent):
    """Load, faults and interrupts on today's patched arm (tests/matrix/test_reliability.py)."""
    tests_impl(session, "today", agent, True, ["tests/matrix/test_reliability.py"],
               name=f"reliability(agent={agent})")


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def unit(session):
    """The harness's own tests: model, seed table, builds, bisection, comparison, renderers."""
    install_harness(session)
    session.install(*nox.project.dependency_groups(PYPROJECT, "report"))
    session.run("pytest", "tests/unit/test_model.py", "tests/unit/test_builds.py", "tests/unit/test_history.py",
                "tests/unit/test_deploy_compare.py", "tests/unit/test_report.py",
                "tests/unit/test_records.py",
                "--junitxml", str(results_file("unit", ".junit.xml")), *session.posargs)


# -- conformance (issue 14): Autobahn|Testsuite on every gevent-websocket arm ----

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


def conformance_server(session, target, stack, fixed):
    """The server env of one target, beside the session's; returns its interpreter."""
    where = Path(session.virtualenv.location) / "targets" / target
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


@nox.session(python=None, default=False, tags=CI)
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
    targets = [f"{target}={conformance_server(session, target, *axes)}"
               for target, axes in CONFORMANCE_TARGETS.items()]
    # The harness's own checks first: index.json parsing, the rule, the stall watchdog.
    session.run("pytest", "tests/unit/test_conformance.py", "-q")
    session.run("python", "-m", "tests.harness.conformance", "--wstest", str(wstest),
                *(a for target in targets for a in ("--target", target)),
                "--results", str(RESULTS / "conformance.json"),
                "--report", str(REPORT / "conformance"),
                "--logs", str(RESULTS / "conformance.logs"), *session.posargs,
                terminate_timeout=PYTEST_TERMINATE_TIMEOUT)


@nox.session(python=None, tags=CI)
def report(session):
    """Merge every session's results into the observations grid and report/."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "report"))
    session.run("python", "-m", "tests.harness.report", "--results", str(RESULTS),
                "--out", str(REPORT), *session.posargs)


@nox.session(python=None, default=False, tags=CI)
def page(session):
    """The report as readers see it: report/index.html in headless Chromium.

    tests/product/test_report_page.py loads the page
    `nox -s report` wrote in headless Chromium (DOM, drill-down, console, screenshots).

    Apart from `report`: the page test needs Debian's chromium, which the GitHub report
    job does not have, and a browser failure must not mask the matrix's own verdict.
    Run it after `nox -s report`; in `nox -t ci` it follows the report session (noxfile order).
    """
    session.install(*nox.project.dependency_groups(PYPROJECT, "harness", "report", "page"))
    session.run("pytest", "tests/product/test_report_page.py",
                *session.posargs, env={"MATRIX_REPORT": str(REPORT)})


@nox.session(python=None, default=False, tags=CI)
def workflow(session):
    """The GitHub workflow: actionlint, zizmor, its jobs against `nox -l`, a local rehearsal."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "test", "workflow"))
    session.run("pytest", "tests/product/test_workflow.py", *session.posargs)


@nox.session(python=None, default=False)
def serve(session):
    """The app by hand: `nox -s serve -- [--stack seed] [--fixed] [--agent --rum] ...`."""
    from tests.harness.serve import parse, usage

    args, app_args = parse(session.posargs)
    install_harness(session)
    install_node_client(session)
    python = install_server(session, args.stack, args.agent, args.fixed, "serve")
    client = python if args.stack == "seed" else Path(session.virtualenv.location) / "bin/python"
    session.log(usage(args, python, client))
    session.run(str(python), "-m", "app", *app_args, external=True)


@nox.session(python=None, default=False)
def wheel(session):
    """Write the patched gevent-websocket wheels to dist/ for users."""
    install_harness(session)
    dist = ROOT / "dist"
    session.run("python", "-m", "tests.harness.builds", "--stack", "today", "--build", "patched",
                "--dest", str(dist))
    try:
        find_python27()
    except MissingPython as exc:
        session.warn(f"0.9.5+fixed (CPython 2.7) not built: {exc}")
        return
    session.run("python", "-m", "tests.harness.builds", "--stack", "seed", "--build", "patched",
                "--python", str(py27_env(session, "wheel")), "--dest", str(dist))


@nox.session(python=None, default=False)
def lint(session):
    """ruff on the harness; app/ is checked for Python 2.7 syntax by checks(seed, ...)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", "noxfile.py", "tests")


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
    pip27_install(session, python, house, *filter(None, others))
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
