"""The atlas: which versions work together, generated from runs.

    python -m tests.harness.atlas                  the plan's summary: axes, picks, size
    python -m tests.harness.atlas --refresh        the picks recomputed from the registry
    python -m tests.harness.atlas --shard K/N      shard K of N (stack i where i % N == K-1)
    python -m tests.harness.atlas --sample N       the plan's first N stacks (one per era first)
    python -m tests.harness.atlas --only a03,a07   those stacks
    python -m tests.harness.atlas --matrix [N]     GitHub's matrix: the shards the estimate
                                                   needs (~35 min each), at most N (256)
    python -m tests.harness.atlas --build          report/atlas.json and its markdown table
    ... --since OLD_PLAN                           only the stacks holding a pick OLD_PLAN had
                                                   not (a refresh's new releases); with
                                                   --build, what their runs flip

A run serves each stack with the user-stack command (tests/harness/userstack), its results
under results/atlas/<id>/; exit 1 if a cell disagrees with the model.  Bad input is one
line ``error: <cause>; <fix>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ..paths import CACHE
from ..userstack._errors import EXIT_BAD_INPUT, StackError
from ..userstack._registry import Registry
from . import _changes, _plan, _runs, _table
from ._plan import PLAN, Plan

# GitHub runs at most 256 jobs of one matrix; a shard of about this much of the plan's
# estimate is worth a job's setup and keeps it well under GitHub's six hours.
MAX_SHARDS = 256
SHARD_SECONDS = 35 * 60


def shards(plan: Plan, most: int = MAX_SHARDS) -> int:
    """The shards the plan's estimate needs, each about SHARD_SECONDS, at most ``most``."""
    wanted = math.ceil(plan.size.estimated_seconds / SHARD_SECONDS)
    return max(1, min(wanted, most, len(plan.stacks)))


def matrix(plan: Plan, most: int = MAX_SHARDS) -> str:
    """GitHub's matrix for the shards the plan's estimate needs, at most ``most``: one
    entry per shard that has stacks, with the Pythons they need."""
    if not 1 <= most <= MAX_SHARDS:
        raise StackError(
            f"--matrix {most}: GitHub runs 1 to {MAX_SHARDS} jobs of a matrix; write e.g. "
            f"--matrix {MAX_SHARDS} (as many shards of ~{SHARD_SECONDS // 60} min of the "
            "estimate as the plan needs, at most that)"
        )
    count = shards(plan, most)
    include = []
    for k in range(1, count + 1):
        stacks = _runs.select(plan, shard=(k, count))
        if stacks:
            pythons = sorted(
                {s.python for s in stacks}, key=lambda v: tuple(map(int, v.split(".")))
            )
            include.append({"shard": f"{k}/{count}", "pythons": pythons})
    return json.dumps({"include": include})


def read(source: Path) -> Plan:
    """The plan in ``source`` (StackError if it is none)."""
    try:
        return _plan.load_plan(source)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StackError(
            f"{source}: not a plan ({exc!r}); regenerate it (python -m tests.harness.atlas "
            "--refresh)"
        ) from None


def since(plan: Plan, old: Plan) -> Plan:
    """``plan`` cut to the stacks that hold a pick ``old`` had not, its size with them."""
    stacks = _changes.with_new_picks(old, plan)
    share = len(stacks) / max(1, len(plan.stacks))
    size = dataclasses.replace(
        plan.size,
        stacks=len(stacks),
        cells=sum(s.cells for s in stacks),
        estimated_seconds=round(plan.size.estimated_seconds * share),
    )
    return dataclasses.replace(plan, stacks=stacks, size=size)


def refresh(source: Path) -> int:
    """The plan recomputed from the registry, what changed printed, then written."""
    old = read(source) if source.is_file() else None
    new = _plan.refresh()  # StackError when the registry cannot be read
    for line in _plan.diff(old, new) if old else [f"a new plan: {len(new.stacks)} stacks"]:
        print(line)
    _plan.write_plan(new, source)
    print(f"written: {source} ({new.size.stacks} stacks, {new.size.cells} cells)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.atlas", description=__doc__.split("\n")[0]
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--refresh", action="store_true", help="recompute the picks, rewrite the plan"
    )
    what.add_argument("--shard", metavar="K/N", help="run shard K of N")
    what.add_argument("--sample", metavar="N", type=int, help="run the plan's first N stacks")
    what.add_argument("--only", metavar="IDS", help="run these stacks (comma-separated ids)")
    what.add_argument(
        "--matrix",
        metavar="N",
        type=int,
        nargs="?",
        const=MAX_SHARDS,
        help="print GitHub's matrix: the shards the estimate needs (~35 min), at most N",
    )
    what.add_argument("--build", action="store_true", help="report/atlas.json from the results")
    parser.add_argument("--plan", type=Path, default=PLAN, help="the plan (tests/data/atlas/)")
    parser.add_argument(
        "--since",
        metavar="OLD_PLAN",
        type=Path,
        help="only the stacks with a pick OLD_PLAN had not; with --build, what they flip",
    )
    parser.add_argument("--results", type=Path, default=_runs.ATLAS_RESULTS)
    parser.add_argument("--work", type=Path, default=CACHE / "stacks")
    parser.add_argument("--out", type=Path, default=_table.ATLAS_JSON, help="--build's document")
    args = parser.parse_args(argv)
    try:
        if args.refresh:
            return refresh(args.plan)
        plan = read(args.plan)
        old = read(args.since) if args.since else None
        if old is not None and not args.build:
            plan = since(plan, old)
        if args.matrix is not None:
            print(matrix(plan, args.matrix))
            return 0
        if args.build:
            doc = _table.build(args.plan, args.results, args.out)
            print(_table.markdown(doc), end="")
            if old is not None:
                print("\n" + _changes.summary(old, plan, args.results), end="")
            print(f"written: {args.out}", file=sys.stderr)
            return 0
        if not (args.shard or args.sample is not None or args.only):
            print(_plan.summary(plan))
            return 0
        stacks = _runs.select(
            plan,
            shard=_runs.parse_shard(args.shard) if args.shard else None,
            sample=args.sample,
            only=[i.strip() for i in (args.only or "").split(",") if i.strip()],
            source=args.plan,
        )
        _runs.check_pins(stacks, Registry())
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    if not stacks:
        print(f"no stack in this selection of {args.plan.name}: nothing to run")
        return 0
    return _runs.run(stacks, args.results, args.work)
