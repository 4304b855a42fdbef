"""``python -m tests.bench.matrix_time``: what the matrix costs in wall time.

Runs nox itself (the same noxfile, the default sessions) into a separate
``--envdir`` and a separate results/report directory, so the developers'
``.nox`` environments, ``results/`` and ``report/`` are never touched:

1. cold install, uv backend: ``nox --install-only -N --envdir ENVDIR/uv``
   (fresh environments, warm package caches; every session's install phase,
   npm ci and the cached gevent-websocket wheels included, pytest skipped);
2. cold install, pip: the same with ``-db virtualenv`` into ``ENVDIR/virtualenv``;
3. warm: ``nox -R --envdir ENVDIR/uv -s matrix seed report`` in the
   environments step 1 made, with ``PYTEST_ADDOPTS="-m cell"``: every session
   runs its 8 cells (the other test files are collected, then deselected),
   and the report is made from them.  Its pytest phases are timed from nox's
   own output: from the line ``nox > pytest ...`` to the next ``nox >`` line
   (pytest's whole process: interpreter start, collection, the cells).
   Overhead is everything else in the warm run's wall time.  With pytest cut
   to the cells, the overhead weighs more than in a full run: the ratio
   warm / pytest phases is an upper bound of a full run's.  The workflow
   session is left out: it checks the CI file, no cell, and its own pytest is a
   minutes-long rehearsal of the fan-out.

Every line nox prints is stamped on arrival; a session's span runs from its
``Running session`` line to the next session's (or nox's summary), so these
runs are sequential (``-j 1``: in parallel, nox prints each session's output
when it ends).  Every nox run is bounded (``--timeout`` each).
tests/bench/main_job.py times the main job itself, on a fresh clone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.harness.paths import ROOT

NOX_TIMEOUT = 300.0  # s any one nox run may take before it is killed (bound)
RUNNING = re.compile(r"^nox > Running session (?P<name>.+)$")
SUMMARY = re.compile(r"^nox > Ran \d+ sessions?")
RESULT = re.compile(
    r"^nox > Session (?P<name>.+?) (?P<status>was successful|failed|"
    r"was skipped)"
)
WARM_SESSIONS = ("matrix", "seed", "report")


class NoxRunError(RuntimeError):
    pass


def run_nox(nox, args, env=None, timeout=NOX_TIMEOUT, log=None, cwd=ROOT):
    """Run nox, stamping every output line as it arrives: (wall, rc, [(t, line)])."""
    argv = [*nox, "-f", str(Path(cwd) / "noxfile.py"), *args]
    lines = []
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))  # the bound
    timer.start()
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append((time.monotonic() - started, line))
            if log is not None:
                log.write(line + "\n")
        proc.wait()
    finally:
        timer.cancel()
        proc.stdout.close()
    wall = time.monotonic() - started
    if proc.returncode < 0:
        raise NoxRunError(f"{shlex.join(argv)} killed after {timeout:.0f} s (bound)")
    return wall, proc.returncode, lines


COMMANDS = [  # (label, pattern after "nox > "): what a nox line starts, for the breakdown
    ("create venv", re.compile(r"Creating virtual environment")),
    ("uv pip install", re.compile(r"\S*uv pip install")),
    ("pip install (2.7 server)", re.compile(r"\S*py27/bin/python -m pip install")),
    ("pip wheel (2.7 wheelhouse)", re.compile(r"\S*py27/bin/python -m pip wheel")),
    ("pip install", re.compile(r"python -m pip install")),
    ("virtualenv (2.7 env)", re.compile(r"python -m virtualenv")),
    ("gevent-websocket wheel (cached build)", re.compile(r"python -m tests\.harness\.builds")),
    ("npm ci", re.compile(r"npm ci")),
    ("pytest", re.compile(r"(\S*/)?pytest(\s|$)")),
    ("report", re.compile(r"python -m tests\.harness\.report")),
]


def label(command):
    for name, pattern in COMMANDS:
        if pattern.match(command):
            return name
    return None


def spans(lines, wall):
    """{session: {"wall", "status", "pytest", "commands"}} from the stamped output.

    A command's time runs from its ``nox > ...`` line to the next ``nox >`` line.
    """
    sessions = {}
    current = None
    running = None  # (started, label) of the command in progress
    for t, line in lines + [(wall, "nox > (end)")]:
        if not line.startswith("nox > "):
            continue
        text = line[len("nox > ") :]
        if running is not None:
            took = t - running[0]
            commands = current["commands"]
            commands[running[1]] = round(commands.get(running[1], 0.0) + took, 3)
            if running[1] == "pytest":
                current["pytest"] = round(current["pytest"] + took, 3)
            running = None
        m = RUNNING.match(line)
        if m or SUMMARY.match(line) or text == "(end)":
            if current is not None:
                current["wall"] = round(t - current.pop("_start"), 3)
            current = None
            if m:
                current = sessions[m["name"]] = {
                    "_start": t,
                    "status": None,
                    "pytest": 0.0,
                    "commands": {},
                }
            continue
        if current is None:
            continue
        what = label(text)
        if what is not None:
            running = (t, what)
        r = RESULT.match(line)
        if r:
            current["status"] = {
                "was successful": "success",
                "failed": "failed",
                "was skipped": "skipped",
            }[r["status"]]
    return sessions


def totals(per_session):
    """Seconds per kind of command over every session."""
    out = {}
    for s in per_session.values():
        for name, took in s["commands"].items():
            out[name] = round(out.get(name, 0.0) + took, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def phase(nox, label, args, env, log_dir, timeout):
    with open(log_dir / f"{label}.log", "w") as log:
        wall, rc, lines = run_nox(nox, args, env=env, timeout=timeout, log=log)
    per_session = spans(lines, wall)
    return {
        "command": "nox " + shlex.join(args),
        "wall": round(wall, 3),
        "returncode": rc,
        "sessions": per_session,
        "commands": totals(per_session),
        "failed": sorted(n for n, s in per_session.items() if s["status"] == "failed"),
        "log": str(log_dir / f"{label}.log"),
    }


def default_sessions(nox, env):
    """The sessions a plain ``nox`` runs (``nox -l --json`` lists only those)."""
    proc = subprocess.run(
        [*nox, "-f", str(ROOT / "noxfile.py"), "-l", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [entry["session"] for entry in json.loads(proc.stdout)]


def outer_session_removed(environ):
    """This process's environment without the nox session it may run in.

    The nox runs measured here must find the interpreter a user's nox finds,
    not the bench session's virtualenv first on PATH.
    """
    env = dict(environ)
    venv = env.pop("VIRTUAL_ENV", None)
    if venv:
        bin_dir = os.path.join(venv, "bin")
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir
        )
    for key in ("NOX_CURRENT_SESSION", "CONDA_PREFIX"):
        env.pop(key, None)
    return env


def measure(nox, envdir, results, report, log_dir, timeout=NOX_TIMEOUT, warm=True):
    envdir, results, report, log_dir = map(Path, (envdir, results, report, log_dir))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = outer_session_removed(os.environ)
    env.update(MATRIX_RESULTS=str(results), MATRIX_REPORT=str(report))
    out = {
        "envdir": str(envdir),
        "results": str(results),
        "default_sessions": default_sessions(nox, env),
    }
    for backend in ("uv", "virtualenv"):  # deleting last run's envs is not part of a cold run
        shutil.rmtree(envdir / backend, ignore_errors=True)
    out["cold_uv"] = phase(
        nox,
        "cold-uv",
        ["-j", "1", "--install-only", "-N", "--envdir", str(envdir / "uv")],
        env,
        log_dir,
        timeout,
    )
    out["cold_virtualenv"] = phase(
        nox,
        "cold-virtualenv",
        [
            "-j",
            "1",
            "--install-only",
            "-N",
            "-db",
            "virtualenv",
            "--envdir",
            str(envdir / "virtualenv"),
        ],
        env,
        log_dir,
        timeout,
    )
    if warm:
        for stale in (results, report):  # only this run's cells count
            shutil.rmtree(stale, ignore_errors=True)
        warm_env = dict(env, PYTEST_ADDOPTS="-m cell")
        w = out["warm"] = phase(
            nox,
            "warm",
            ["-j", "1", "-R", "--envdir", str(envdir / "uv"), "-s", *WARM_SESSIONS],
            warm_env,
            log_dir,
            timeout,
        )
        w["pytest_addopts"] = warm_env["PYTEST_ADDOPTS"]
        w["pytest_sum"] = round(sum(s["pytest"] for s in w["sessions"].values()), 3)
        w["overhead"] = round(w["wall"] - w["pytest_sum"], 3)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.matrix_time")
    parser.add_argument("--nox", default="nox", help="how to run nox (split like a shell)")
    parser.add_argument("--envdir", required=True, help="scratch envdir (uv/, virtualenv/)")
    parser.add_argument("--results", required=True, help="results dir of the warm run")
    parser.add_argument("--report", required=True, help="report dir of the warm run")
    parser.add_argument("--logs", required=True, help="where each nox run's output goes")
    parser.add_argument("--out", required=True, help="write the figures here (JSON)")
    parser.add_argument("--timeout", type=float, default=NOX_TIMEOUT)
    parser.add_argument("--no-warm", dest="warm", action="store_false")
    args = parser.parse_args(argv)
    figures = measure(
        shlex.split(args.nox),
        args.envdir,
        args.results,
        args.report,
        args.logs,
        args.timeout,
        args.warm,
    )
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps({k: v.get("wall") if isinstance(v, dict) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
