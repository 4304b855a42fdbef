"""``python -m tests.bench.stack_time``: what ``nox -s stack`` costs for one user stack.

The target, for a stack with one layer (today's with Sentry: its 32 cells and the layer's
8): at most 3 minutes cold and 1 minute warm on this machine.

1. cold: the stack's server environment deleted first (``--work`` of its own, emptied),
   the bench's own nox envdir too, so the session's harness env is installed again, and
   uv's cache (``UV_CACHE_DIR`` of its own, emptied): every wheel is downloaded again;
   pip's cache and the project's verified sdists and built wheels (``.cache/``) stay;
2. warm: the same command again (``nox -R``: both environments reused, uv's cache filled).

Each run is one ``nox -s stack -- -r FILE`` (all arms, every cell), bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from tests.bench.matrix_time import run_nox
from tests.harness.paths import CACHE, DATA, ROOT

STACK = DATA / "stacks" / "today-sentry.txt"  # today's era, nox's own Python, Sentry
TIMEOUT = 600.0  # s for one nox run (bound): twice the cold target and more
TARGETS = {"cold": 180.0, "warm": 60.0}  # s


def measure(nox: list[str], work: Path, stack: Path = STACK) -> dict[str, object]:
    """{"cold": s, "warm": s, ...} of ``nox -s stack -- -r stack``, and their exit codes."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    found: dict[str, object] = {"stack": str(stack.relative_to(ROOT)), "targets": TARGETS}
    for run, reuse in (("cold", []), ("warm", ["-R"])):
        with (work / f"{run}.log").open("w") as log:
            wall, rc, _ = run_nox(
                nox,
                [
                    "--envdir",
                    str(work / "nox"),
                    *reuse,
                    "-s",
                    "stack",
                    "--",
                    "-r",
                    str(stack),
                    "--work",
                    str(work / "stack"),
                ],
                env={
                    **os.environ,
                    "MATRIX_RESULTS": str(work / run),
                    "UV_CACHE_DIR": str(work / "uv"),
                },
                timeout=TIMEOUT,
                log=log,
            )
        found[run] = round(wall, 1)
        found[f"{run}_exit"] = rc
        found[f"{run}_log"] = str(work / f"{run}.log")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.stack_time", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--nox",
        default=f"{shlex.quote(sys.executable)} -m nox",
        help="how to run nox (split like a shell)",
    )
    parser.add_argument("--work", type=Path, default=CACHE / "bench-stack")
    parser.add_argument("--stack", type=Path, default=STACK, help="a requirements file")
    args = parser.parse_args(argv)
    found = measure(shlex.split(args.nox), args.work, args.stack.resolve())
    print(json.dumps(found, indent=1))
    return 0 if found["cold_exit"] == found["warm_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
