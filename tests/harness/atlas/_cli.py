"""The atlas: which versions work together, generated from runs.

    python -m tests.harness.atlas                  the plan's summary: axes, picks, size
    python -m tests.harness.atlas --refresh        the picks recomputed from the registry
    python -m tests.harness.atlas --shard K/N      shard K of N (stack i where i % N == K-1)
    python -m tests.harness.atlas --sample N       the N stacks that cover the most pairs
    python -m tests.harness.atlas --only a03,a07   those stacks
    python -m tests.harness.atlas --matrix N       GitHub's matrix for N shards
    python -m tests.harness.atlas --build          report/atlas.json and its markdown table

A run serves each stack with the user-stack command (tests/harness/userstack), its results
under results/atlas/<id>/; exit 1 if a cell disagrees with the model.  Bad input is one
line ``error: <cause>; <fix>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..paths import CACHE
from ..userstack._errors import EXIT_BAD_INPUT, StackError
from ..userstack._registry import Registry
from . import _runs, _table


def summary(plan: _runs.Plan) -> str:
    lines = [f"plan {plan.path}: {len(plan.stacks)} stacks"]
    for name, axis in plan.axes.items():
        picks = ", ".join(str(v["version"]) for v in axis.get("values", []))
        lines.append(f"  {name}: {picks}")
    for stack in plan.stacks:
        lines.append(f"  {stack.id} (covers {stack.covers}): {' '.join(stack.args())}")
    doc = json.loads(plan.path.read_text())
    if doc.get("size"):
        lines.append("  size: " + ", ".join(f"{k} {v}" for k, v in doc["size"].items()))
    return "\n".join(lines)


def matrix(plan: _runs.Plan, shards: int) -> str:
    """GitHub's matrix: one entry per shard that has stacks, with the Pythons they need."""
    if shards < 1:
        raise StackError(f"--matrix {shards}: at least one shard; write e.g. --matrix 4")
    include = []
    for k in range(1, shards + 1):
        stacks = _runs.select(plan, shard=(k, shards))
        if stacks:
            pythons = sorted(
                {s.python for s in stacks}, key=lambda v: tuple(map(int, v.split(".")))
            )
            include.append({"shard": f"{k}/{shards}", "pythons": pythons})
    return json.dumps({"include": include})


def refresh(plan: Path) -> int:
    """The plan's picks recomputed (tests/harness/atlas/_plan.py, the plan's own module)."""
    try:
        from . import _plan  # type: ignore[attr-defined]
    except ImportError:
        raise StackError(
            "--refresh: the plan's module (tests/harness/atlas/_plan.py) is not here yet; "
            f"edit {plan} by hand meanwhile"
        ) from None
    return int(_plan.main(["--refresh"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.atlas", description=__doc__.split("\n")[0]
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--refresh", action="store_true", help="recompute the picks, rewrite the plan"
    )
    what.add_argument("--shard", metavar="K/N", help="run shard K of N")
    what.add_argument("--sample", metavar="N", type=int, help="run the N best-covering stacks")
    what.add_argument("--only", metavar="IDS", help="run these stacks (comma-separated ids)")
    what.add_argument("--matrix", metavar="N", type=int, help="print GitHub's matrix for N shards")
    what.add_argument("--build", action="store_true", help="report/atlas.json from the results")
    parser.add_argument("--plan", type=Path, help="the plan (default: tests/data/atlas/plan.json)")
    parser.add_argument("--results", type=Path, default=_runs.ATLAS_RESULTS)
    parser.add_argument("--work", type=Path, default=CACHE / "stacks")
    parser.add_argument("--out", type=Path, default=_table.ATLAS_JSON, help="--build's document")
    args = parser.parse_args(argv)
    try:
        plan = _runs.load_plan(args.plan)
        if args.refresh:
            return refresh(plan.path)
        if args.matrix is not None:
            print(matrix(plan, args.matrix))
            return 0
        if args.build:
            doc = _table.build(plan, args.results, args.out)
            print(_table.markdown(doc), end="")
            print(f"written: {args.out}", file=sys.stderr)
            return 0
        if not (args.shard or args.sample is not None or args.only):
            print(summary(plan))
            return 0
        stacks = _runs.select(
            plan,
            shard=_runs.parse_shard(args.shard) if args.shard else None,
            sample=args.sample,
            only=[i.strip() for i in (args.only or "").split(",") if i.strip()],
        )
        _runs.check_pins(stacks, Registry())
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    if not stacks:
        print(f"no stack in this selection of {plan.path.name}: nothing to run")
        return 0
    return _runs.run(stacks, args.results, args.work)
