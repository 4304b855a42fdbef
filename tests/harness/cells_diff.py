"""Two runs' cells side by side: ``python -m tests.harness.cells_diff BEFORE AFTER``.

BEFORE and AFTER are results directories (or files); cells are matched by session and
cell id (the session's file name and the cell's slug), each client's observation by
client name.  Prints every cell whose verdict or observable differs and the counts;
exit status 1 if any differs or a cell is in one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.cells import Cell
from tests.harness.records import COMPARED

# The observables a cell's record holds per client: what it asserts against the model.
OBSERVABLES = COMPARED

Key = tuple[str, str]


def cells_of(path: Path) -> dict[Key, dict[str, Any]]:
    """{(session file, cell slug): {client: {observable: value}}} of a results dir or file."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    found: dict[Key, dict[str, Any]] = {}
    for file in files:
        doc = json.loads(file.read_text())
        if not isinstance(doc, dict):
            continue
        for record in doc.get("cells") or ():
            slug = Cell(**record["cell"]).slug()
            found[(file.stem, slug)] = {
                o["client"]: {k: o.get(k) for k in OBSERVABLES} for o in record["observed"]
            }
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.cells_diff", description=__doc__.split("\n")[0]
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before, after = cells_of(args.before), cells_of(args.after)
    common = sorted(before.keys() & after.keys())
    differ = [key for key in common if before[key] != after[key]]
    for session, slug in differ:
        print(
            f"{session} {slug}:\n  before {before[(session, slug)]}\n"
            f"  after  {after[(session, slug)]}"
        )
    only = sorted(before.keys() ^ after.keys())
    for session, slug in only:
        print(f"{session} {slug}: only {'before' if (session, slug) in before else 'after'}")
    print(f"{len(common)} cells compared, {len(differ)} differ, {len(only)} in one run only")
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
