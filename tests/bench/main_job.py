"""``python -m tests.bench.main_job``: the main job's wall time as a new user meets it.

Each run happens in a fresh ``git clone`` of a commit (HEAD by default: committed
work only), so its ``.nox``, ``results/``, ``report/`` and ``.cache/`` start
empty; with ``--empty-caches`` every cold run also gets empty package caches
(uv's, pip's, npm's), as on a new machine; without it they stay warm:

1. cold: a plain ``nox`` in the fresh clone (the main job: 8 sessions, report);
2. warm: ``nox -R`` in the same clone;
3. the levers one by one, warm: ``nox -R`` with MATRIX_WORKERS=0 (sessions two at
   a time, cells one at a time), with MATRIX_WORKERS=2 (two xdist workers in every
   session), then ``nox -R -j 1`` with MATRIX_WORKERS=0 (serial: the same work one
   session and one cell at a time);
4. with ``--ci``: ``nox -t ci`` (what .ci/run runs) in a second fresh clone.

With ``--vs REV`` the runs are paired instead: cold, warm (and ``--ci``) each at
REV, then at the measured commit, one after the other, so both carry the same
machine; the levers are left out.  The figures then hold both sides and each
session's change.

Per session from nox's own ``--report`` file; per cell from the clone's
results files.  Every nox run is bounded (``--timeout``, ``--ci-timeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.matrix_time import NoxRunError, outer_session_removed, run_nox
from tests.bench.report import PAIRED
from tests.harness import records
from tests.harness.paths import ROOT
from tests.harness.records import SessionResults, session_rerun

TIMEOUT = 900.0  # s for one plain nox run (bound)
CI_TIMEOUT = 1800.0  # s for `nox -t ci` (bound; CI's own limit is 20 min)
RUNS = ("cold", "warm", "no_xdist", "xdist_all", "serial", "ci")
TARGETS = {"cold": 45.0, "warm": 20.0, "ci": 600.0}  # s
CACHES = {"UV_CACHE_DIR": "uv", "PIP_CACHE_DIR": "pip", "npm_config_cache": "npm"}


def clone(dest, rev="HEAD"):
    """A fresh clone of ``rev`` at ``dest``: (its short hash, whether the checkout is dirty)."""
    shutil.rmtree(dest, ignore_errors=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True, timeout=120
    )
    subprocess.run(
        ["git", "-C", str(dest), "checkout", "--quiet", "--detach", head], check=True, timeout=60
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return head, bool(dirty)


def one_run(nox, clone_dir, label, args, env, log_dir, timeout):
    """nox in the clone: wall, exit status, and each session's duration from --report."""
    report = log_dir / f"{label}.nox-report.json"
    report.unlink(missing_ok=True)
    with open(log_dir / f"{label}.log", "w") as log:
        wall, rc, _ = run_nox(
            nox, ["--report", str(report), *args], env=env, timeout=timeout, log=log, cwd=clone_dir
        )
    sessions = {}
    if report.exists():
        for entry in json.loads(report.read_text()).get("sessions", []):
            sessions[entry.get("signatures", [entry.get("name")])[0]] = {
                "status": entry.get("result"),
                "duration": round(entry.get("duration") or 0, 1),
            }
    return {
        "command": "nox " + shlex.join(args),
        "wall": round(wall, 1),
        "returncode": rc,
        "sessions": sessions,
        "log": str(log_dir / f"{label}.log"),
    }


def pytest_walls(results_dir):
    """{session: pytest's own wall time} from the results files (cells, protocol)."""
    out = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        doc = records.read(path, SessionResults, session_rerun)
        if doc.cells:
            out[doc.session] = doc.duration
    return out


def empty_caches(env, where):
    """``env`` with uv's, pip's and npm's caches in a new empty directory ``where``."""
    shutil.rmtree(where, ignore_errors=True)
    return dict(env, **{key: str(Path(where) / name) for key, name in CACHES.items()})


def nox_env():
    env = outer_session_removed(os.environ)
    for key in ("MATRIX_RESULTS", "MATRIX_REPORT", "MATRIX_WORKERS", "NOX_PARALLEL", "CI"):
        env.pop(key, None)
    return env


def paired(nox, work, rev, ci=False, empty=False, timeout=TIMEOUT, ci_timeout=CI_TIMEOUT):
    """cold, warm (and ci) at ``rev`` then at HEAD, run by run: {"before", "after"}."""
    work = Path(work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = nox_env()
    sides = {"before": rev, "after": "HEAD"}
    out = {
        "load_before": list(os.getloadavg()),
        "targets": TARGETS,
        "empty_caches": empty,
        "before": {},
        "after": {},
    }
    for side, commit in sides.items():
        out[side]["commit"], out[side]["dirty"] = clone(work / side / "clone", commit)
    for kind in PAIRED:
        if kind == "ci" and not ci:
            continue
        for side in sides:
            clone_dir = work / side / "clone"
            run_env = dict(env, CI="true") if kind == "ci" else env
            if kind == "ci":
                clone_dir = work / side / "clone-ci"
                clone(clone_dir, out[side]["commit"])
            if kind != "warm" and empty:
                run_env = empty_caches(run_env, work / side / f"caches-{kind}")
            elif kind == "warm" and empty:  # the caches its cold run filled
                run_env = dict(
                    run_env,
                    **{
                        key: str(work / side / "caches-cold" / name) for key, name in CACHES.items()
                    },
                )
            args = {"cold": [], "warm": ["-R"], "ci": ["-t", "ci"]}[kind]
            out[side][kind] = one_run(
                nox,
                clone_dir,
                f"{side}-{kind}",
                args,
                run_env,
                logs,
                ci_timeout if kind == "ci" else timeout,
            )
            print(
                f"bench: {side} ({out[side]['commit']}) {kind}: "
                f"{out[side][kind]['wall']:.1f} s, exit {out[side][kind]['returncode']}",
                flush=True,
            )
    out["load_after"] = list(os.getloadavg())
    return out


def measure(nox, work, ci=False, timeout=TIMEOUT, ci_timeout=CI_TIMEOUT, empty=False):
    work = Path(work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = nox_env()
    out = {"load_before": list(os.getloadavg()), "targets": TARGETS, "empty_caches": empty}
    main = work / "clone"
    out["commit"], out["dirty"] = clone(main)
    cold_env = empty_caches(env, work / "caches") if empty else env
    out["cold"] = one_run(nox, main, "main-cold", [], cold_env, logs, timeout)
    out["pytest_walls"] = pytest_walls(main / "results")
    out["cells_results"] = str(main / "results")
    env = cold_env  # the warm runs keep what the cold one cached
    out["warm"] = one_run(nox, main, "main-warm", ["-R"], env, logs, timeout)
    out["no_xdist"] = one_run(
        nox, main, "main-no-xdist", ["-R"], dict(env, MATRIX_WORKERS="0"), logs, timeout
    )
    out["xdist_all"] = one_run(
        nox, main, "main-xdist-all", ["-R"], dict(env, MATRIX_WORKERS="2"), logs, timeout
    )
    out["serial"] = one_run(
        nox, main, "main-serial", ["-R", "-j", "1"], dict(env, MATRIX_WORKERS="0"), logs, timeout
    )
    if ci:
        ci_clone = work / "clone-ci"
        clone(ci_clone)
        ci_env = empty_caches(env, work / "caches-ci") if empty else env
        out["ci"] = one_run(
            nox, ci_clone, "ci-cold", ["-t", "ci"], dict(ci_env, CI="true"), logs, ci_timeout
        )
    out["load_after"] = list(os.getloadavg())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.main_job")
    parser.add_argument("--nox", default=f"{shlex.quote(sys.executable)} -m nox")
    parser.add_argument("--work", required=True, help="scratch directory for the clones")
    parser.add_argument("--out", required=True, help="write the figures here (JSON)")
    parser.add_argument("--ci", action="store_true", help="also `nox -t ci` (minutes)")
    add_options(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        figures = run(shlex.split(args.nox), args.work, args)
    except NoxRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written: {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


def add_options(parser):
    parser.add_argument(
        "--vs",
        metavar="REV",
        default=None,
        help="pair every run with the same run at REV (before -> after)",
    )
    parser.add_argument(
        "--empty-caches",
        action="store_true",
        help="cold runs start with empty uv, pip and npm caches",
    )


def run(nox, work, args):
    """The main-job figures the options ask for (--vs: paired, else one commit's)."""
    if args.vs:
        return paired(nox, work, args.vs, args.ci, args.empty_caches)
    return measure(nox, work, args.ci, empty=args.empty_caches)


if __name__ == "__main__":
    sys.exit(main())
