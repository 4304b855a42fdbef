"""``python -m tests.harness.stacklines``: one user stack per Werkzeug major line.

Runs tests/harness/userstack/ on each ``[[line]]`` of tests/data/stacks/lines.toml
(its requirements file, on its Python; none named: this interpreter), one after the
other, and exits non-zero if any stack could not be built (2) or any cell disagreed
with the model or a positive control failed (1).  The `stacks` session calls it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .paths import DATA
from .userstack import main as userstack

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli on older interpreters
    import tomli as tomllib

LINES = DATA / "stacks" / "lines.toml"


def lines(path: Path = LINES) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = tomllib.loads(path.read_text())["line"]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.stacklines", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lines", type=Path, default=LINES)
    parser.add_argument("--work", type=Path, default=None, help="passed to userstack")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="passed to userstack (each stack's sessions are named after it)",
    )
    args = parser.parse_args(argv)
    outcome = {}
    for line in lines(args.lines):
        file = args.lines.parent / line["file"]
        argv = [
            "-r",
            str(file),
            *(["--python", line["python"]] if "python" in line else []),
            *(["--work", str(args.work)] if args.work else []),
            *(["--results", str(args.results)] if args.results else []),
        ]
        print(f"== Werkzeug {line['werkzeug']}: {' '.join(argv)}", flush=True)
        started = time.monotonic()
        status = userstack(argv)
        outcome[line["werkzeug"]] = (status, time.monotonic() - started)
        sys.stdout.flush()
    print(
        "stacks: "
        + ", ".join(
            f"Werkzeug {w} {'ok' if s == 0 else f'exit {s}'} ({t:.0f} s)"
            for w, (s, t) in outcome.items()
        )
    )
    return max((s for s, _ in outcome.values()), default=0)


if __name__ == "__main__":
    sys.exit(main())
