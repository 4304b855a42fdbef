"""The matrix: stacks x (agent, fixed), each session installing its own server.

    nox                             # the main job: every cell, the protocol checks, the report
    nox -t ci                       # the test command: the main job and every other check
    nox -s "matrix(agent=False, fixed=True)"
    nox -R                          # reuse environments, skip installs
    nox -s serve -- --agent --rum   # the app by hand (prints the URL and the clients)
    nox -s wheel                    # patched wheels into dist/

This file is the table of sessions: tests_impl() runs pytest against one arm's server,
tests/harness/envs.py builds the environments.  Versions live in pyproject.toml
([tool.stacks], [dependency-groups]).
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import shutil
import sys
from pathlib import Path

import nox
import nox.virtualenv
from nox.command import CommandFailed

sys.path.insert(0, str(Path(__file__).parent))

from tests.harness.builds import COMPILE, PY27_BUILD_ENV  # noqa: E402
from tests.harness.cells import (  # noqa: E402
    ARMS,
    BOOLS,
    HANDLERS,
    HISTORY,
    MAIN_STACKS,
    handler_layer_name,
    handler_layers,
    layer_arms,
    slug,
)
from tests.harness.cells_pytest import CellsRun  # noqa: E402
from tests.harness.conformance import TARGETS as CONFORMANCE_TARGETS  # noqa: E402
from tests.harness.envs import (  # noqa: E402
    conformance_server,
    gevent_websocket_wheel,
    history_base_env,
    history_rule_env,
    install_groups,
    install_handler_server,
    install_harness,
    install_layer,
    install_layers,
    install_node_client,
    install_server,
    install_wstest,
    needs_python27,
    require_python27,
    results_file,
)
from tests.harness.paths import REPORT, RESULTS, ROOT  # noqa: E402
from tests.harness.py27 import py27_env  # noqa: E402

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

CHECK_ARMS = [
    nox.param(stack, agent, fixed, id=f"{stack}, agent={agent}, fixed={fixed}")
    for stack in MAIN_STACKS
    for agent, fixed in ARMS
]
PYTEST_TERMINATE_TIMEOUT = 10.0  # s pytest gets to stop its servers after nox's SIGTERM
# pytest-xdist workers of a main-job session (MATRIX_WORKERS sets it for every one).
# With two sessions at a time on 2 cores, the 8 cells of a session gain nothing from
# two workers of their own, which cost two more interpreters (`nox -s bench` measures
# both); the sessions with the protocol checks, the longest, do gain: only they get 2.
PROTOCOL_WORKERS = 2
# A handler session's cells and protocol checks (without the agent): most checks wait out
# a read bound where the handler keeps TCP, so more at once cost little CPU.  (Its layer
# runs keep PROTOCOL_WORKERS: 4 cells each, where more workers cost more than they save.)
HANDLER_WORKERS = 4
# A handler's own checks beside the protocol's, in its session without the agent.
HANDLER_CHECKS = {"gevent-ws": ["tests/matrix/test_reader_race.py"]}


def workers(default: int) -> list[str]:
    """pytest-xdist's -n: each cell and check has its own server on port 0, so they can
    run side by side (MATRIX_WORKERS, for every main-job session; 0: one at a time)."""
    count = int(os.environ.get("MATRIX_WORKERS", default))
    return ["-n", str(count)] if count > 0 else []


def tests_impl(
    session: nox.Session,
    stack: str,
    agent: bool,
    fixed: bool,
    paths: list[str],
    *,
    xdist: int | None = None,
    handler: str | None = None,
    layer: str | None = None,
) -> None:
    """pytest on ``paths`` against this arm's server; results under RESULTS/<session name>.

    ``xdist``: the main job's default number of workers (MATRIX_WORKERS overrides it);
    None for the other checks, whose bounds and figures assume one test at a time.
    ``handler``: one of [tool.handlers] instead of gevent-websocket (today's stack only).
    """
    name = session.name
    if needs_python27(stack):
        require_python27(session, results_file(name))
    install_harness(session)
    install_node_client(session)
    server_python = (
        install_handler_server(session, handler, agent)
        if handler
        else install_server(session, stack, agent, fixed)
    )
    if layer:
        install_layer(session, stack, layer, server_python)
    run_pytest(
        session,
        stack,
        agent,
        fixed,
        paths,
        server_python,
        session.name,
        xdist=xdist,
        handler=handler,
        layer=layer,
    )


def run_pytest(
    session: nox.Session,
    stack: str,
    agent: bool,
    fixed: bool,
    paths: list[str],
    server_python: Path,
    name: str,
    *,
    xdist: int | None = None,
    handler: str | None = None,
    layer: str | None = None,
) -> None:
    """One pytest run against servers of ``server_python``, recorded as ``name``."""
    run = CellsRun(
        paths=paths,
        stack=stack,
        agent=agent,
        fixed=fixed,
        server_python=server_python,
        results=results_file(name),
        logs=results_file(name, ".logs"),
        name=name,
        junit=results_file(name, ".junit.xml"),
        handler=handler,
        layer=layer,
        workers=workers(xdist) if xdist is not None else [],
    )
    session.run(
        "pytest",
        *run.args(),
        *session.posargs,
        # On Ctrl-C nox gives pytest 0.3 s, then SIGTERM (tests/conftest.py: servers
        # signalled, teardown runs), then only 0.2 s before SIGKILL: too short.
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


def main_job(session: nox.Session, stack: str, agent: bool, fixed: bool) -> None:
    """The cells (with their positive controls) and, per arm of today's stack, the
    RFC 6455 / bad-input checks (tests/matrix/test_protocol.py)."""
    protocol = stack == "today" and not agent
    paths = ["tests/matrix/test_cells.py", *(["tests/matrix/test_protocol.py"] if protocol else [])]
    tests_impl(session, stack, agent, fixed, paths, xdist=PROTOCOL_WORKERS if protocol else 0)


# -- sessions ----------------------------------------------------------------
# Sessions that write results come first; "report" runs after every one of them
# (it allows no parallel session beside it, so it starts once all above are done),
# then "workflow", whose rehearsal compares its own fan-out with that report.


# -- conformance: Autobahn|Testsuite on every gevent-websocket build and handler
# Writes results/conformance.json and Autobahn's HTML under report/conformance/<target>/;
# fails if a patched build (0.10.1+fixed, 0.9.5+fixed) has a case (outside compression)
# that is not OK, or vanilla one that maps to no named defect.  The first run also
# builds wstest's wheels.
# First in `nox -t ci`, beside the other sessions: the longest session, it would
# otherwise start last and run alone.  Its waits are bounded well above a loaded
# machine's times (STALL_TIMEOUT; Autobahn's own per-case bounds, e.g. 100 s for 9.1.6).


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def conformance(session: nox.Session) -> None:
    """Autobahn|Testsuite (wstest fuzzingclient): four gevent-websocket builds, two handlers."""
    require_python27(session)  # wstest and the seed stack run on it
    install_harness(session)
    wstest = install_wstest(session, Path(session.virtualenv.location) / "wstest")
    # Every target, the handlers' too: their deviations (DEVIATIONS in
    # tests/harness/conformance.py: 9.*; flask-sock's 6.4.* and compression cases) keep
    # their runs short.
    targets = [
        f"{target}={conformance_server(session, target, *axes)}"
        for target, axes in CONFORMANCE_TARGETS.items()
    ]
    # The harness's own checks first: index.json parsing, the rule, the stall watchdog.
    session.run("pytest", "tests/unit/test_conformance.py", "-q")
    session.run(
        "python",
        "-m",
        "tests.harness.conformance",
        "--wstest",
        str(wstest),
        *(a for target in targets for a in ("--target", target)),
        "--results",
        str(RESULTS / "conformance.json"),
        "--report",
        str(REPORT / "conformance"),
        "--logs",
        str(RESULTS / "conformance.logs"),
        *session.posargs,
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


# Next in `nox -t ci`: seconds, no server, beside conformance.
@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def lint(session: nox.Session) -> None:
    """ruff check and format on the harness, noxfile and app/ (2.7 settings), mypy strict."""
    # mypy checks the noxfile against the nox that runs it, not a second pin of nox.
    install_groups(session, "lint", "test", "report")
    session.install(f"nox=={importlib.metadata.version('nox')}")
    session.run("ruff", "check", "noxfile.py", "tests", "app", ".github")
    # The tree is in ruff format's style (.git-blame-ignore-revs names the commit).
    session.run("ruff", "format", "--check", "--diff", "noxfile.py", "tests", "app", ".github")
    session.run("mypy", *session.posargs)


@nox.session(python=None, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def matrix(session: nox.Session, agent: bool, fixed: bool) -> None:
    """Today's stack on the interpreter nox runs on."""
    main_job(session, "today", agent, fixed)


@nox.session(python=None, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def seed(session: nox.Session, agent: bool, fixed: bool) -> None:
    """The 2016 stack: the server runs on CPython 2.7, the harness on this Python."""
    main_job(session, "seed", agent, fixed)


# -- deploy: the same cells the way users deploy -------------------
# gunicorn with gevent-websocket's GeventWebSocketWorker, the agent started by
# `newrelic-admin run-program`, on today's pins plus [tool.stacks.deploy]'s own;
# the same verified wheel as the matrix, installed unchanged.  Opt-in: `nox -t ci`.


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("agent", "fixed"), ARMS)
def deploy(session: nox.Session, agent: bool, fixed: bool) -> None:
    """Today's stack under gunicorn's gevent-websocket worker, agent by newrelic-admin."""
    # the cells; gunicorn's stop and lifeline (master and worker)
    tests_impl(
        session,
        "deploy",
        agent,
        fixed,
        ["tests/matrix/test_cells.py", "tests/matrix/test_deploy.py"],
    )


# -- handlers: the migration question ------------------------------------
# Today's stack served by another websocket handler ([tool.handlers], app/handlers.py),
# gevent-websocket not installed: the 8 cells with every positive control and, without
# the agent, the protocol checks (each handler's known defects: tests/harness/defects.py).
# The reference rows, vanilla and patched gevent-websocket, are the matrix sessions'.
HANDLER_ARMS = [
    nox.param(name, agent, id=f"name={name}, agent={agent}") for name in HANDLERS for agent in BOOLS
]


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("name", "agent"), HANDLER_ARMS)
def handler(session: nox.Session, name: str, agent: bool) -> None:
    """Today's stack on another websocket handler (gevent-ws, flask-sock): cells, protocol;
    without the agent, then each of today's layers' cells on it (one pytest run each)."""
    checks = ["tests/matrix/test_protocol.py", *HANDLER_CHECKS.get(name, [])]
    paths = ["tests/matrix/test_cells.py", *([] if agent else checks)]
    tests_impl(
        session, "today", agent, False, paths, xdist=0 if agent else HANDLER_WORKERS, handler=name
    )
    if agent:  # a layer's cells have no agent
        return
    # Every layer's pins in this one env (they agree: install_layers checks), each run
    # setting up only its own layer.
    server_python = install_layers(session, handler_layers())
    # Two workers: where a layer reads the upgraded socket as its body, flask-sock's
    # cells wait out the client's TCP bound (tests/harness/cellrun.py says why).
    failed = []
    for layer_name in handler_layers():  # every layer runs, whichever failed before it
        try:
            run_pytest(
                session,
                "today",
                False,
                False,
                ["tests/matrix/test_layers.py"],
                server_python,
                handler_layer_name(name, layer_name),
                handler=name,
                layer=layer_name,
                xdist=PROTOCOL_WORKERS,
            )
        except CommandFailed:
            failed.append(layer_name)
    if failed:
        session.error(
            f"layer cells failed on {name}: {', '.join(failed)} (results/"
            f"{slug(handler_layer_name(name, failed[0]))}.json and beside it)"
        )


# -- layers: today's request layers, each set up as its docs say -------------
# One session per [tool.layers.<name>] x stack where it has pins x build: its 4 cells
# (tests/matrix/test_layers.py; the stack's first layer's sessions add the 4 layer-off
# controls, one per stack and build), then, on the patched build, the no-network proofs
# with the layer on.  The app monkey-patches in these sessions (tests/matrix/test_cells.py).
# The stack is a parameter (not one session for both) because each stack is its own server
# env: `nox -s "layer(seed, sentry, fixed=False)"` reads as the cell labels do.  A layer
# without pins for a stack has no session there; the report names it with the reason.
LAYER_ARMS = [
    nox.param(stack, name, fixed, id=f"{stack}, {name}, fixed={fixed}")
    for stack, name, fixed in layer_arms()
]


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("stack", "name", "fixed"), LAYER_ARMS)
def layer(session: nox.Session, stack: str, name: str, fixed: bool) -> None:
    """A request layer's cells on one stack and build (the layer-off control in the
    stack's first layer's sessions), and, once per layer, its no-network proofs."""
    tests_impl(
        session,
        stack,
        False,
        fixed,
        [
            "tests/matrix/test_layers.py",
            # the layer's code is the same on both builds: its patched arm proves it
            *(["tests/matrix/test_no_network.py"] if fixed else []),
        ],
        layer=name,
    )


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize(("stack", "agent", "fixed"), CHECK_ARMS)
def checks(session: nox.Session, stack: str, agent: bool, fixed: bool) -> None:
    """Per arm, beside the cells: test_app, test_lifeline, the no-network proofs."""
    # the app on this arm's server, the harness's death stops the server (SIGKILL),
    # the no-network proofs (the agent's arms)
    tests_impl(
        session,
        stack,
        agent,
        fixed,
        [
            "tests/matrix/test_app.py",
            "tests/matrix/test_lifeline.py",
            *(["tests/matrix/test_no_network.py"] if agent else []),
        ],
    )


# Alone (no parallel session beside it), as when sessions ran one at a time: its
# figures (fds, greenlets, threads back to their baseline) must not carry another
# session's load.
@nox.session(python=None, default=False, tags=CI)
@nox.parametrize("agent", BOOLS)
def reliability(session: nox.Session, agent: bool) -> None:
    """Load, faults and interrupts on today's patched arm (tests/matrix/test_reliability.py)."""
    tests_impl(session, "today", agent, True, ["tests/matrix/test_reliability.py"])


def nox_uv() -> dict[str, str]:
    """UV=<the uv nox itself uses>, for the harness code that runs uv: nox finds it beside
    itself (the `uv` package) or on PATH, and a session's PATH may have neither (nox
    called by its path from a virtualenv that is not activated)."""
    return {"UV": shutil.which(nox.virtualenv.UV) or nox.virtualenv.UV}


# Offline and in seconds: the tests that download or build (marked `builds`) run in
# the session below.
@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def unit(session: nox.Session) -> None:
    """The harness's own tests, offline: model, bisection, renderers, records, stack input."""
    install_groups(session, "harness", "report")
    session.run(
        "pytest",
        "tests/unit/test_model.py",
        "tests/unit/test_history.py",
        "tests/unit/test_deploy_compare.py",
        "tests/unit/test_report.py",
        "tests/unit/test_records.py",
        "tests/unit/test_pythons.py",
        "tests/unit/test_userstack.py",
        "tests/unit/test_cellrun.py",
        "tests/unit/test_criteria.py",
        "tests/unit/test_upgrade.py",
        "tests/unit/test_atlas_plan.py",
        "tests/unit/test_atlas_table.py",
        "-m",
        "not builds and not stacks",
        "--junitxml",
        str(results_file("unit", ".junit.xml")),
        *session.posargs,
    )


# The unit tests marked `builds`: they download sdists and registry metadata, and build
# wheels.  The seed's wheels are built on CPython 2.7, in an env made here (an install
# step: `nox -R` reuses it).
@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def builds(session: nox.Session) -> None:
    """The builder for real (sdists verified, patched, built into wheels) and the registry."""
    install_groups(session, "harness", "builder", "report")  # report: collecting tests/unit
    py27 = py27_env(session, require_python27(session))
    session.run(
        "pytest",
        "tests/unit",
        "-m",
        "builds",
        "--junitxml",
        str(results_file("builds", ".junit.xml")),
        *session.posargs,
        env={PY27_BUILD_ENV: str(py27), **nox_uv()},
    )


# -- your stack: the cells for the versions a user runs -------------------
# tests/harness/userstack/ reads the pins, fills in the rest, builds the server env
# (atomically, under .cache/stacks/, reused by a second run) and runs the cells of each
# arm; their results go to RESULTS as stack(<name>, agent=…, fixed=…), a stack of its own.


def userstack(session: nox.Session, args: list[str], failed: str) -> None:
    """tests/harness/userstack with ``args``: with --predict the model alone, in nox's own
    process (no env, no install, well under a second; the registry only for a NAME without
    a version), else in the harness env, its uv the one nox uses."""
    if "--predict" in args:
        from tests.harness.userstack import main

        if main(args):
            session.error(failed)
        return
    install_harness(session)
    install_node_client(session)
    session.run(
        "python",
        "-m",
        "tests.harness.userstack",
        *args,
        "--results",
        str(RESULTS),
        env=nox_uv(),
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


@nox.session(python=None, default=False)
def stack(session: nox.Session) -> None:
    """A user's stack: `nox -s stack -- -r FILE | NAME==VERSION ... [--python X.Y] [--predict]`."""
    userstack(session, session.posargs, "bad input (the line above says why)")


# The stack as pinned (exactly `nox -s stack`'s run of the file: the same environment and
# results), then with the named pins moved, and every observation that changes.  Its
# command exits 1 if one gets worse, 2 on bad input; nox fails the session on either.
@nox.session(python=None, default=False)
def upgrade(session: nox.Session) -> None:
    """What moving pins changes: `nox -s upgrade -- -r FILE NAME[==VERSION] ... [--predict]`."""
    userstack(
        session,
        ["--upgrade", *session.posargs],
        "an observation gets worse, or bad input (the lines above say)",
    )


# The plan's stacks through the user-stack command (tests/harness/atlas/): too long for
# `nox -t ci`; the workflow runs its shards (--matrix, --shard K/N) and then --build.
@nox.session(python=None, default=False)
def atlas(session: nox.Session) -> None:
    """Which versions work together: `nox -s atlas -- [--shard K/N|--only IDS|--build|...]`."""
    install_harness(session)
    install_node_client(session)
    session.run(
        "python",
        "-m",
        "tests.harness.atlas",
        *session.posargs,
        env=nox_uv(),
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


# Each line runs on its own Python (tests/data/stacks/lines.toml: 2.7, 3.8, 3.9, nox's).
@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
def stacks(session: nox.Session) -> None:
    """One user stack per Werkzeug major line (0.x-3.x) against the model; `upgrade` for real."""
    install_harness(session)
    install_node_client(session)
    session.run(
        "python",
        "-m",
        "tests.harness.stacklines",
        "--results",
        str(RESULTS),
        *session.posargs,
        env=nox_uv(),
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )
    # The unit tests marked `stacks`: `upgrade` run for real, reusing the environments
    # the lines built, and a stack served by flask-sock; two at a time (each waits on its
    # cells).
    session.run(
        "pytest",
        "tests/unit/test_upgrade.py",
        "tests/unit/test_atlas_table.py",
        "tests/unit/test_userstack.py",
        "-m",
        "stacks",
        "-n",
        "2",
        "--junitxml",
        str(results_file("stacks", ".junit.xml")),
        env=nox_uv(),
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


# -- history: which upstream release changed a cell ------------------------
# One session per [tool.history.<package>] of pyproject.toml, on the stack's 2.7 server
# without <package> (history_base_env).  What it proved is committed as
# tests/data/history/<package>.json, which the report cites; by default (and in
# `nox -t ci`) the session re-proves that data: all cells at the range's ends and at
# both neighbours of each flip, failing with the difference (tests/harness/history_lock.py).
#   nox -s "history(newrelic)" -- --full     the whole search (tests/harness/history.py)
#   nox -s "history(newrelic)" -- --update   the whole search, written as the data


@nox.session(python=None, default=False, tags=CI, allow_parallel=True)
@nox.parametrize("package", list(HISTORY), ids=list(HISTORY))
def history(session: nox.Session, package: str) -> None:
    """Re-prove the committed history of `package` (-- --full: search again, --update: rewrite)."""
    install_harness(session)
    install_node_client(session)
    python = (
        history_rule_env(session, package)
        if "axes" in HISTORY[package]
        else history_base_env(session, package, HISTORY[package]["stack"])
    )
    session.run(
        "python",
        "-m",
        "tests.harness.history_lock",
        "--package",
        package,
        "--python",
        str(python),
        "--out",
        str(REPORT),
        "--work",
        str(Path(session.virtualenv.location) / "history"),
        *session.posargs,
        terminate_timeout=PYTEST_TERMINATE_TIMEOUT,
    )


@nox.session(python=None, tags=CI)
def report(session: nox.Session) -> None:
    """Merge every session's results into the observations grid and report/."""
    install_groups(session, "report")
    session.run(
        "python",
        "-m",
        "tests.harness.report",
        "--results",
        str(RESULTS),
        "--out",
        str(REPORT),
        *session.posargs,
    )


# tests/product/test_report_page.py loads the page `nox -s report` wrote in headless
# Chromium (DOM, drill-down, console, screenshots).  Apart from `report`: it needs
# Debian's chromium, which the GitHub report job does not have, and a browser failure
# must not mask the matrix's own verdict.  In `nox -t ci` it follows the report session.
@nox.session(python=None, default=False, tags=CI)
def page(session: nox.Session) -> None:
    """The report as readers see it: report/index.html in headless Chromium."""
    install_groups(session, "harness", "report", "page")
    session.run(
        "pytest",
        "tests/product/test_report_page.py",
        *session.posargs,
        env={"MATRIX_REPORT": str(REPORT)},
    )


@nox.session(python=None, default=False, tags=CI)
def workflow(session: nox.Session) -> None:
    """The GitHub workflow: actionlint, zizmor, its jobs against `nox -l`, a local rehearsal."""
    install_groups(session, "test", "workflow")
    session.run("pytest", "tests/product/test_workflow.py", *session.posargs)


@nox.session(python=None, default=False)
def serve(session: nox.Session) -> None:
    """The app by hand: `nox -s serve -- [--stack seed] [--fixed] [--agent --rum] ...`."""
    from tests.harness.serve import parse, usage

    args, app_args = parse(session.posargs)
    install_harness(session)
    install_node_client(session)
    python = install_server(session, args.stack, args.agent, args.fixed)
    client = python if args.stack == "seed" else Path(session.virtualenv.location) / "bin/python"
    session.log(usage(args, python, client))
    session.run(str(python), "-m", "app", *app_args, external=True)


@nox.session(python=None, default=False)
def wheel(session: nox.Session) -> None:
    """Write the patched gevent-websocket wheels to dist/ for users."""
    install_harness(session)
    dist = ROOT / "dist"
    session.run(
        "python",
        "-m",
        "tests.harness.builds",
        "--stack",
        "today",
        "--build",
        "patched",
        "--dest",
        str(dist),
    )
    python = py27_env(session, require_python27(session))  # 0.9.5+fixed is built on 2.7
    session.run(
        "python",
        "-m",
        "tests.harness.builds",
        "--stack",
        "seed",
        "--build",
        "patched",
        "--python",
        str(python),
        "--dest",
        str(dist),
    )


# Writes report/bench.json and report/bench.md (the last step: `nox -s stack` cold and
# warm).  Its nox runs use their own envdir, results and report under the session's
# directory.
# `nox -s bench -- --only handlers`: the handlers against patched gevent-websocket alone,
# into the existing report/bench.json; `-- --only main-job --vs REV`: plain `nox`, `nox -R`
# (and with --ci `nox -t ci`) at REV and at HEAD, paired, into report/bench-main-job.*.
@nox.session(python=None, default=False)
def bench(session: nox.Session) -> None:
    """What the matrix costs: wall time (cold uv vs pip, warm), per cell, echo throughput."""
    load = ",".join(f"{v:.2f}" for v in os.getloadavg())  # before this session's own work
    install_harness(session)
    install_groups(session, "bench", env=COMPILE)
    install_node_client(session)
    # Today's server with the agent, vanilla; the patched build beside it, first
    # on PYTHONPATH for the patched servers: the build is their only difference.
    python = install_server(session, "today", True, False)
    work = Path(session.virtualenv.location) / "work"
    patched = work / "patched-gevent-websocket"
    wheel = gevent_websocket_wheel(session, "today", True)
    if wheel:
        shutil.rmtree(patched, ignore_errors=True)
        session.install("--no-deps", "--target", str(patched), wheel)
    # Each handler's server env (its pins, no gevent-websocket), as conformance builds it.
    handlers = [
        f"--handler={name}={conformance_server(session, f'today-{name}', 'today', False, name)}"
        for name in HANDLERS
    ]
    session.run(
        "python",
        "-m",
        "tests.bench.run",
        "--python",
        str(python),
        "--patched-path",
        str(patched),
        "--work",
        str(work),
        *handlers,
        "--nox",
        f"{shlex.quote(sys.executable)} -m nox",
        "--out",
        str(REPORT),
        "--load-before",
        load,
        *session.posargs,
    )
