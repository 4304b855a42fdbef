"""The GitHub job matrix, from what nox lists: one job per default session.

    nox -l --json | python .github/sessions.py --python 3.11 3.12 3.13 3.14

`nox -l --json` lists the sessions a plain `nox` runs (the main job: those
without default=False), parametrizations expanded.  This prints GITHUB_OUTPUT
lines, each a JSON list:

    matrix=[{"name": "matrix(agent=False, fixed=False)",
             "slug": "matrix-agent-False-fixed-False",
             "checks": "checks(today, agent=False, fixed=False)",
             "checks_slug": "checks-today-agent-False-fixed-False"}, ...]
    seed=[...]
    python=["3.11", "3.12", "3.13", "3.14"]

In .github/workflows/matrix.yml, `matrix` feeds the `today` job (once per entry
and Python version) and `seed` the `seed` job; each runs `nox -s "<name>"`,
then the same arm's other checks of `nox -t ci`, `nox -s "<checks>"`; `slug`
names the session's results files (results/<slug>.json, .junit.xml).
The sessions in OWN_JOB run once in a job of their own.  Any other default
session is an error, so a new kind of session cannot silently miss CI.
tests/product/test_workflow.py runs the workflow's own step and compares with nox.

    nox -s atlas -- --matrix 32 | python .github/sessions.py --atlas

reads the atlas CLI's matrix (its last line: {"include": [{"shard": "K/N", "pythons":
[...]}]}) and prints `matrix=` for the `atlas` job: per shard its `shard`, a `slug` for
its artifact, the Pythons setup-python installs (`setup`, newline-separated, the
harness's last so it is `python`) and whether it needs the cached CPython 2.7 (`py27`)
or the cached 3.6 and 3.7 (`pyenv`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a plain script: it finds the checkout itself to import the harness from it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.cells import (  # noqa: E402  (session names, the file names they write)
    SESSION_KIND,
    checks_name,
    slug,
)

PER_SESSION = ("matrix", "seed")  # one job per parametrization: the workflow's job ids
OWN_JOB = ("report",)  # one job, after them
STACK_OF = {kind: stack for stack, kind in SESSION_KIND.items()}


def outputs(listed, pythons):
    jobs = {name: [] for name in PER_SESSION}
    unknown = []
    for entry in listed:
        name = entry.get("name") or entry["session"].split("(")[0]
        if name in jobs:
            arm = entry.get("call_spec") or {}
            checks = checks_name(STACK_OF[name], arm.get("agent"), arm.get("fixed"))
            jobs[name].append(
                {
                    "name": entry["session"],
                    "slug": slug(entry["session"]),
                    "checks": checks,
                    "checks_slug": slug(checks),
                }
            )
        elif name not in OWN_JOB:
            unknown.append(entry["session"])
    if unknown:
        raise SystemExit(
            f"default sessions without a job in .github/workflows/matrix.yml: "
            f"{unknown}; add a job for them (and to PER_SESSION or OWN_JOB here)"
        )
    empty = [name for name, entries in jobs.items() if not entries]
    if empty:
        raise SystemExit(f"nox lists no {empty} sessions; is this the project's noxfile?")
    return {**jobs, "python": list(pythons)}


HARNESS_PYTHON = "3.11"  # the Python nox and the harness run on, in every job
PYTHON27 = "2.7"  # from the python27 job's cache: setup-python has none
PYENV = ("3.6", "3.7")  # from the atlas-pythons job's cache: none for ubuntu-24.04 either
MAX_JOBS = 256  # GitHub's limit on the jobs of one matrix


def atlas_matrix(cli_stdout):
    """The `atlas` job's matrix from what `nox -s atlas -- --matrix N` printed."""
    lines = [line for line in cli_stdout.splitlines() if line.strip()]
    try:
        include = json.loads(lines[-1])["include"]
        shards = [(entry["shard"], list(entry["pythons"])) for entry in include]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"the atlas CLI printed no matrix ({exc!r}); its output ended: {lines[-3:]}"
        ) from None
    # none: a weekly refresh with no new release (--since), the shard jobs are skipped
    if len(shards) > MAX_JOBS:
        raise SystemExit(f"{len(shards)} atlas shards: GitHub runs 0 to {MAX_JOBS} per matrix")
    out = []
    for shard, pythons in shards:
        built = (PYTHON27, *PYENV, HARNESS_PYTHON)
        setup = [p for p in pythons if p not in built] + [HARNESS_PYTHON]
        out.append(
            {
                "shard": shard,
                "slug": shard.replace("/", "-of-"),
                "pythons": " ".join(pythons),
                "setup": "\n".join(setup),
                "py27": PYTHON27 in pythons,
                "pyenv": any(p in PYENV for p in pythons),
            }
        )
    return {"include": out}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python .github/sessions.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--python",
        nargs="+",
        help="the Python versions of today's stack (the second axis)",
    )
    what.add_argument(
        "--atlas",
        action="store_true",
        help="read `nox -s atlas -- --matrix N` instead: the atlas job's matrix",
    )
    args = parser.parse_args(argv)
    if args.atlas:
        matrix = atlas_matrix(sys.stdin.read())
        found = {"matrix": matrix, "shards": len(matrix["include"])}
    else:
        found = outputs(json.load(sys.stdin), args.python)
    for key, value in found.items():
        print(f"{key}={json.dumps(value, separators=(',', ':'))}")


if __name__ == "__main__":
    main()
