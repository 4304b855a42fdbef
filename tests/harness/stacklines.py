"""``python -m tests.harness.stacklines``: one user stack per Werkzeug major line.

Runs tests/harness/userstack/ on each ``[[line]]`` of tests/data/stacks/lines.toml
(its requirements file, on its Python; none named: this interpreter), one after the
other, and exits non-zero if any stack could not be built (2) or any cell disagreed
with the model or a positive control failed, or a layer the line names (``layers``)
did not have its cells run on each build (1).  The `stacks` session calls it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import records
from .cells import BOOLS, slug
from .paths import DATA, RESULTS
from .records import SchemaError, SessionResults
from .userstack import main as userstack
from .userstack._predict import LAYER_COLUMNS
from .userstack._request import stack_name
from .userstack._run import layer_session_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli on older interpreters
    import tomli as tomllib

LINES = DATA / "stacks" / "lines.toml"


def lines(path: Path = LINES) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = tomllib.loads(path.read_text())["line"]
    return found


def layers_not_run(file: Path, layers: list[str], results: Path) -> list[str]:
    """Why a layer the line names did not have its cells run and pass on each build."""
    name = stack_name(file.stem)
    problems = []
    for layer in layers:
        for fixed in BOOLS:
            session = layer_session_name(name, layer, fixed)
            path = results / f"{slug(session)}.json"
            try:
                doc = records.read(path, SessionResults, "nox -s stacks")
            except (OSError, SchemaError) as exc:
                problems.append(f"{session}: no results ({exc})")
                continue
            if doc.status != "passed" or len(doc.cells) != len(LAYER_COLUMNS):
                problems.append(
                    f"{session}: expected {len(LAYER_COLUMNS)} cells passed, got "
                    f"{len(doc.cells)} with status {doc.status} ({path})"
                )
    return problems


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
        missing = layers_not_run(file, line.get("layers", []), args.results or RESULTS)
        for why in missing:
            print(f"stacks: {why}")
        outcome[line["werkzeug"]] = (status or (1 if missing else 0), time.monotonic() - started)
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
