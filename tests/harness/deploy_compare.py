"""Deploy rows against the matrix rows of the same arms: where gunicorn changes the outcome.

``differences(matrix_docs, deploy_docs)`` is pure: given the SessionResults of
the two session families (results/<slug>.json), it lists every cell whose
records.Outcome differs (verdict, closed, valid_close_frame), and every cell that one
side observed and the other did not.  The report (tests/harness/report.py)
shows the list beside the deploy grid; each entry is a finding to explain.

    python -m tests.harness.deploy_compare [--results results]   # prints the rows
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from . import records
from .cells import BOOLS, Cell, session_name, slug
from .records import OUTCOME_COLUMNS, CellRecord, Outcome, SessionResults, session_rerun
from .timing import PHASES

REFERENCE = "today"  # the stack a deploy cell is read against


def rows(docs: Iterable[SessionResults]) -> dict[Cell, CellRecord]:
    """{cell on the reference stack: CellRecord} over SessionResults, passed or failed."""
    return {record.cell.on(REFERENCE): record for doc in docs for record in doc.cells}


def differences(
    matrix_docs: Sequence[SessionResults],
    deploy_docs: Sequence[SessionResults],
) -> list[dict[str, Any]]:
    """[{"cell": Cell, "matrix": Outcome or None, "deploy": Outcome or None, "columns": [...]}].

    Only cells of the arms the deploy docs cover are compared: a deploy run of
    one session is compared with the matrix session of the same arm.
    """
    matrix, deploy = rows(matrix_docs), rows(deploy_docs)
    arms = {(doc.agent, doc.fixed) for doc in deploy_docs}
    found: list[dict[str, Any]] = []
    for cell in sorted(set(matrix) | set(deploy)):
        if cell.arm not in arms:
            continue
        left = matrix[cell].outcome() if cell in matrix else None
        right = deploy[cell].outcome() if cell in deploy else None
        if left is None or right is None:
            columns = ["observed"]
        else:
            columns = [c for c in OUTCOME_COLUMNS if getattr(left, c) != getattr(right, c)]
        if columns:
            found.append({"cell": cell, "matrix": left, "deploy": right, "columns": columns})
    return found


def load(results_dir: str | Path, stack: str) -> list[SessionResults]:
    """Every SessionResults of ``stack`` present in results_dir (absent ones skipped)."""
    docs = []
    for agent in BOOLS:
        for fixed in BOOLS:
            name = session_name(stack, agent, fixed)
            path = Path(results_dir) / (slug(name) + ".json")
            if path.exists():
                docs.append(records.read(path, SessionResults, session_rerun(name)))
    return docs


def phases(record: CellRecord | None) -> str:
    p = record.phases if record else None
    return ",".join(f"{getattr(p, k):.2f}" for k in PHASES) if p else "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.deploy_compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    try:
        matrix, deploy = load(args.results, REFERENCE), load(args.results, "deploy")
    except records.SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not deploy:
        print(f"no deploy results in {args.results}: run `nox -t ci` or a deploy session")
        return 0
    by_cell, deployed = rows(matrix), rows(deploy)
    print(
        "cell | verdict m/d | closed m/d | valid_close_frame m/d"
        " | seconds m/d (start, exchange, stop)"
    )
    for cell in sorted(deployed):
        d, m = deployed[cell], by_cell.get(cell)
        left = m.outcome() if m else None
        right = d.outcome()

        def pair(column: str, left: Outcome | None = left, right: Outcome = right) -> str:
            return f"{getattr(left, column, '?')!s:5}/{getattr(right, column)!s:5}"

        print(
            cell.label(omit=("stack",)).ljust(46),
            "|",
            pair("verdict"),
            "|",
            pair("closed"),
            "|",
            pair("valid_close_frame"),
            "|",
            f"{phases(m)} / {phases(d)}",
        )
    for label, timed in (
        ("matrix", [by_cell[c] for c in deployed if c in by_cell]),
        ("deploy", list(deployed.values())),
    ):
        print(
            f"{label}: median seconds a cell over {len(timed)} cells: "
            + ", ".join(
                f"{phase} {median(getattr(r.phases, phase) for r in timed):.2f}" for phase in PHASES
            )
            if timed
            else f"{label}: no cells"
        )
    found = differences(matrix, deploy)
    print(
        f"{len(deployed)} deploy cells, {len(found)} differ from the matrix rows of the "
        "same arms" + (":" if found else ".")
    )
    for entry in found:
        print(
            "  ",
            entry["cell"].label(omit=("stack",)),
            entry["columns"],
            "matrix",
            entry["matrix"],
            "deploy",
            entry["deploy"],
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
