"""Session configuration for the matrix: which stack and arm this run claims to be.

nox passes the claim (--stack, --agent/--no-agent, --fixed/--no-fixed,
--server-python); the cells check it against what the server reports, so a
session that installed the wrong build fails instead of mislabelling a row.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import records
from tests.harness.cells import (
    DEFAULT_HANDLER,
    HANDLERS,
    LAUNCHER,
    SESSION_LAYERS,
    STACKS,
    Cell,
    build_name,
    handler_layer_name,
    layer_session_name,
    session_name,
)
from tests.harness.missing import under_ci
from tests.harness.records import CellRecord, ProtocolRecord, SessionResults


def pytest_addoption(parser):
    group = parser.getgroup("matrix")
    group.addoption(
        "--stack",
        default="today",
        help=f"one of {sorted(STACKS)}, or a user stack's name with its --pin's",
    )
    group.addoption("--agent", action="store_true", default=None)
    group.addoption("--no-agent", dest="agent", action="store_false")
    group.addoption("--fixed", action="store_true", default=None)
    group.addoption("--no-fixed", dest="fixed", action="store_false")
    group.addoption(
        "--layer",
        choices=SESSION_LAYERS,
        default=None,
        help="a request layer of [tool.layers]: its cells (tests/matrix/test_layers.py)",
    )
    group.addoption(
        "--server-python",
        default=None,
        help="interpreter that runs `python -m app` (default: this one)",
    )
    group.addoption("--results", default=None, help="write this session's results JSON here")
    group.addoption(
        "--session-name",
        default=None,
        help="the nox session named in the results (default: the arm's matrix/seed)",
    )
    group.addoption("--server-logs", default=None, help="keep server logs in this directory")
    group.addoption(
        "--release",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="a release under test instead of the stack's pin (history sessions): "
        "the positive controls expect the server to report it",
    )
    group.addoption(
        "--handler",
        default=DEFAULT_HANDLER,
        choices=[DEFAULT_HANDLER, *HANDLERS],
        help="the websocket handler the servers run (app/handlers.py); another "
        "than gevent-websocket is a handler session's",
    )
    group.addoption(
        "--pin",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="a user stack's own pin (tests/harness/userstack.py): the stack is "
        "not in pyproject.toml, the positive controls expect these",
    )


@dataclass
class Session:
    stack: str
    agent: bool | None
    fixed: bool | None
    server_python: str
    logs: Path | None
    releases: dict  # {"newrelic": "2.68.0.50"}: what --release puts in place of a pin
    pins: dict  # a user stack's own pins ({} for a stack of pyproject.toml)
    handler: str = DEFAULT_HANDLER  # app/handlers.py: which one the servers run
    layer: str | None = None  # a layer session's layer (--layer)

    @property
    def name(self):
        return default_name(self.stack, self.agent, self.fixed, self.layer, self.handler)

    @property
    def launcher(self):
        """How this stack's servers start (tests/harness/server.py): app or gunicorn."""
        return LAUNCHER.get(self.stack, "app")  # a user stack: python -m app

    def cell(self, **columns):
        """The cell of this session's stack and arm at ``columns`` (rum, ...)."""
        return Cell(
            stack=self.stack, agent=self.agent, fixed=self.fixed, handler=self.handler, **columns
        )

    @property
    def server_handler(self):
        """Server(handler=...): None (the app's default) for gevent-websocket."""
        return None if self.handler == DEFAULT_HANDLER else self.handler


def default_name(stack, agent, fixed, layer, handler):
    """The session a run is, when --session-name does not say: a layer's cells on another
    handler are a run of that handler's session (noxfile.py handler())."""
    if layer and handler != DEFAULT_HANDLER:
        return handler_layer_name(handler, layer)
    if layer:
        return layer_session_name(stack, layer, fixed)
    return session_name(stack, agent, fixed)


@pytest.fixture(scope="session")
def session(pytestconfig, tmp_path_factory):
    opt = pytestconfig.getoption
    logs = opt("server_logs")
    releases, pins = _pins("release", opt("release")), _pins("pin", opt("pin"))
    stack = opt("stack")
    if stack not in STACKS and not pins:
        raise pytest.UsageError(
            f"--stack {stack!r}: not in pyproject.toml [tool.stacks] "
            f"({', '.join(sorted(STACKS))}); name one, or give a user "
            "stack's pins with --pin NAME==VERSION"
        )
    if stack in STACKS and pins:
        raise pytest.UsageError(
            f"--pin with --stack {stack!r}: that stack's pins are in "
            "pyproject.toml; give a user stack another name"
        )
    return Session(
        stack=stack,
        agent=opt("agent"),
        fixed=opt("fixed"),
        server_python=opt("server_python") or sys.executable,
        logs=Path(logs) if logs else tmp_path_factory.mktemp("server-logs"),
        releases=releases,
        pins=pins,
        handler=opt("handler"),
        layer=opt("layer"),
    )


def _pins(option, specs):
    """{name: version} of --release / --pin NAME==VERSION options."""
    out = {}
    for spec in specs:
        name, sep, version = spec.partition("==")
        if not (sep and name and version):
            raise pytest.UsageError(
                f"--{option} {spec!r}: expected NAME==VERSION, e.g. --{option} newrelic==2.68.0.50"
            )
        out[name] = version
    return out


class Results:
    """Every record a test adds (tests/harness/records.py), written as one
    SessionResults file when pytest ends.

    Under pytest-xdist each worker holds the records of the tests it ran: it hands
    them to the controller when it finishes (pytest_sessionfinish, workeroutput),
    the controller merges them (pytest_testnodedown) and alone writes the file.
    """

    KINDS = {"cells": CellRecord, "protocol": ProtocolRecord}

    def __init__(self):
        self.records = {kind: [] for kind in self.KINDS}
        self.started = time.time()

    def add(self, kind, record):
        self.records[kind].append(record)

    def as_json(self):
        return json.dumps(
            {kind: [records.to_dict(r) for r in found] for kind, found in self.records.items()}
        )

    def merge(self, text):
        for kind, found in json.loads(text).items():
            self.records[kind] += [records.from_dict(self.KINDS[kind], r) for r in found]

    def sorted(self):
        """The records in an order that does not depend on which worker ran what."""
        return {
            "cells": sorted(self.records["cells"], key=lambda r: r.cell),
            "protocol": sorted(self.records["protocol"], key=lambda r: r.nodeid),
        }


RESULTS = Results()


@pytest.fixture(scope="session")
def results():
    return RESULTS


def _protocol_outcome(report):
    """passed, failed, skipped, or xfailed (defect observed) / xpassed (defect not seen)."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        return "xpassed"
    return report.outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Each check marked `protocol` becomes one record of the results' "protocol" list.

    The test module puts ("build", ...) and ("evidence", ...) in user_properties;
    the marker's `defect` names what the vanilla arm gets wrong.
    """
    report = yield
    marker = item.get_closest_marker("protocol")
    if marker is not None and (
        report.when == "call" or (report.when == "setup" and not report.passed)
    ):
        props = dict(item.user_properties)
        evidence = props.get("evidence")
        if evidence is None and report.longrepr is not None:
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr)
            evidence = (text.strip().splitlines() or [""])[0][:300]
        fixed = item.config.getoption("fixed")
        handler = item.config.getoption("handler")
        if handler != DEFAULT_HANDLER:  # a handler session: the handler is the build
            props.setdefault("build", handler)
        RESULTS.add(
            "protocol",
            ProtocolRecord(
                check=item.name.removeprefix("test_"),
                nodeid=item.nodeid,
                stack=item.config.getoption("stack"),
                build=props.get("build") or (None if fixed is None else build_name(fixed)),
                outcome=_protocol_outcome(report),
                # a handler session's defect is data (defects.HANDLER_DEFECTS), not a marker
                defect=props["defect"] if "defect" in props else marker.kwargs.get("defect"),
                evidence=evidence,
                duration=round(report.duration, 3),
            ),
        )
    return report


def pytest_configure(config):
    """SIGTERM unwinds like Ctrl-C, so that every `with Server(...)` still stops its server.

    nox answers a Ctrl-C aimed at nox alone by waiting 0.3 s for pytest, then
    sending it SIGTERM (then SIGKILL 0.2 s later).  Python's default SIGTERM
    exits at once, without teardown, and the servers (in sessions of their
    own) would outlive the run.  tests/matrix/test_reliability.py checks both signals.
    """
    import signal
    import threading

    def interrupt(signum, frame):
        from tests.harness.server import Server

        Server.signal_all(signal.SIGTERM)  # now: teardown may not get the time to
        raise KeyboardInterrupt(f"signal {signum}")

    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, interrupt)


WORKER_RECORDS = "matrix_results_records"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: a worker finished; keep the records it ran."""
    records = getattr(node, "workeroutput", {}).get(WORKER_RECORDS)
    if records:
        RESULTS.merge(records)


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes the file
        workeroutput[WORKER_RECORDS] = RESULTS.as_json()
        return
    path = session.config.getoption("results")
    if not path:
        return
    opt = session.config.getoption
    stack, agent, fixed, layer = opt("stack"), opt("agent"), opt("fixed"), opt("layer")
    # A user stack (tests/harness/userstack.py) always names its session: its stack has
    # no session kind of its own, so the default is built only when it is needed.
    name = opt("session_name") or default_name(stack, agent, fixed, layer, opt("handler"))
    records.write(
        path,
        SessionResults(
            session=name,
            stack=stack,
            agent=agent,
            fixed=fixed,
            layer=layer,
            status="passed" if exitstatus == 0 else "failed",
            pytest_exitstatus=int(exitstatus),
            duration=round(time.time() - RESULTS.started, 3),
            python=sys.version.split()[0],
            ci=under_ci(),
            **RESULTS.sorted(),
        ),
    )
