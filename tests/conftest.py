"""Session configuration for the matrix: which stack and arm this run claims to be.

nox passes the claim (--stack, --agent/--no-agent, --fixed/--no-fixed,
--server-python); the cells check it against what the server reports, so a
session that installed the wrong build fails instead of mislabelling a row.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cells import STACKS, session_name


def pytest_addoption(parser):
    group = parser.getgroup("matrix")
    group.addoption("--stack", choices=sorted(STACKS), default="today")
    group.addoption("--agent", action="store_true", default=None)
    group.addoption("--no-agent", dest="agent", action="store_false")
    group.addoption("--fixed", action="store_true", default=None)
    group.addoption("--no-fixed", dest="fixed", action="store_false")
    group.addoption("--server-python", default=None,
                    help="interpreter that runs `python -m app` (default: this one)")
    group.addoption("--results", default=None, help="write this session's results JSON here")
    group.addoption("--server-logs", default=None, help="keep server logs in this directory")


@dataclass
class Session:
    stack: str
    agent: bool | None
    fixed: bool | None
    server_python: str
    logs: Path | None

    @property
    def name(self):
        return session_name(self.stack, self.agent, self.fixed)


@pytest.fixture(scope="session")
def session(pytestconfig, tmp_path_factory):
    opt = pytestconfig.getoption
    logs = opt("server_logs")
    return Session(stack=opt("stack"), agent=opt("agent"), fixed=opt("fixed"),
                   server_python=opt("server_python") or sys.executable,
                   logs=Path(logs) if logs else tmp_path_factory.mktemp("server-logs"))


class Results:
    """Every record a test adds, written as one JSON file when pytest ends."""

    def __init__(self):
        self.records = {"cells": [], "protocol": [], "builds": []}
        self.started = time.time()

    def add(self, kind, record):
        self.records[kind].append(record)


RESULTS = Results()


@pytest.fixture(scope="session")
def results():
    return RESULTS


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("results")
    if not path:
        return
    opt = session.config.getoption
    stack, agent, fixed = opt("stack"), opt("agent"), opt("fixed")
    document = {
        "session": session_name(stack, agent, fixed),
        "stack": stack, "agent": agent, "fixed": fixed,
        "status": "passed" if exitstatus == 0 else "failed",
        "pytest_exitstatus": int(exitstatus),
        "duration": round(time.time() - RESULTS.started, 3),
        "python": sys.version.split()[0],
        "ci": bool(os.environ.get("CI")),
        **RESULTS.records,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
