"""What an upgrade changes: the stack as pinned and with some pins moved, and every cell
and layer observation that differs between the two, side by side, each with the model's
cause and the release whose bisection proved the rule (``nox -s upgrade``).

The two sides are two runs of ``serve`` (_run.py), the first exactly `nox -s stack`'s of
the file; ``--predict`` compares the model's grids instead (_predict.py).  Exit status:
0 nothing gets worse (nothing changes, or only improves), 1 an observation gets worse
(or the moved stack cannot be served, a layer served as pinned is not after the move,
or a cell went unobserved), 2 bad input.
"""

from __future__ import annotations

import difflib
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..cells import HISTORY, NO_LAYER, Cell
from ..model import Prediction, handler_words
from ..records import OUTCOME_COLUMNS, CellRecord, Outcome, from_dict, unfinished
from ._errors import StackError
from ._predict import (
    COLUMNS,
    LAYER_COLUMNS,
    arms,
    builds_of,
    cause,
    model_versions,
    predict_cell,
    stack_facts,
)
from ._registry import Json, Registry
from ._request import Request, read_requirements, served_handler, stack_name
from ._run import serve

EXIT_WORSE = 1
SHOWN = {"closed": "iterable_closed"}  # an Outcome column as the cells' records name it
VERDICT_ORDER = "-~+"  # worse to better; "~": the clients disagreed


@dataclass(frozen=True)
class Move:
    name: str  # canonical
    before: str | None  # the file's exact pin; None: a range (the resolver chose)
    after: str

    def __str__(self) -> str:
        return f"{self.name} {self.before or '(unpinned)'} -> {self.after}"


@dataclass(frozen=True)
class Change:
    cell: Cell  # without its stack: the same cell on both sides
    column: str  # of records.Outcome
    before: Any
    after: Any

    @property
    def direction(self) -> int:
        """-1 worse, 1 better, 0 neither (to or from "nothing to observe")."""
        if self.column == "verdict":
            step = VERDICT_ORDER.index(self.after) - VERDICT_ORDER.index(self.before)
            return (step > 0) - (step < 0)
        # a layer that stops finishing gets worse whether it is then never finished or
        # never started; between those two it is neither
        bad = unfinished if self.column == "layer_finished" else (lambda v: v is False)
        if bad(self.after) and not bad(self.before):
            return -1
        return 1 if bad(self.before) and not bad(self.after) else 0


Outcomes = dict[Cell, Outcome]


def _releases(files: dict[str, list[Json]]) -> list[Version]:
    """A project's final releases with a file that is not yanked, oldest first."""
    found = []
    for version, entries in files.items():
        try:
            v = Version(version)
        except InvalidVersion:
            continue
        if not v.is_prerelease and any(not f.get("yanked") for f in entries):
            found.append(v)
    return sorted(found)


def _in_file(name: str, file: Path) -> bool:
    for line in read_requirements(file):
        try:
            if canonicalize_name(Requirement(line.text).name) == name:
                return True
        except InvalidRequirement:
            continue
    return False


def moves_of(
    request: Request, file: Path, texts: Sequence[str], registry: Registry | None, out: TextIO
) -> list[Move]:
    """The moves named on the command line, checked: each names a pin of the file and a
    release the registry has (the newest if none is named).  ``registry`` None: releases
    named are taken as written (--predict reads the registry only for "the newest")."""
    if not texts:
        raise StackError(
            "no package to move: name one or more after the file, "
            "NAME (its newest release) or NAME==VERSION"
        )
    moves = []
    for text in texts:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            req = None
        specs = list(req.specifier) if req else []
        if (
            req is None
            or req.url
            or req.marker
            or len(specs) > 1
            or (specs and specs[0].operator != "==")
        ):
            raise StackError(
                f"{text!r} is not a package to move; write NAME (its newest "
                "release) or NAME==VERSION"
            )
        name = canonicalize_name(req.name)
        if name not in request.requirements:
            if _in_file(name, file):
                print(
                    f"note: {req.name} decides no cell (the stack lists it as ignored): "
                    "moving it changes nothing the cells observe",
                    file=out,
                )
                continue
            near = difflib.get_close_matches(name, list(request.requirements), n=1)
            if near:
                raise StackError(
                    f"{req.name} is not in {file}, but close to its pin {near[0]}; fix the spelling"
                )
            pins = ", ".join(sorted(request.requirements))
            raise StackError(
                f"{req.name} is not in {file}; add it there (NAME==VERSION) to "
                f"compare a move of it, or move one of its pins ({pins})"
            )
        after = specs[0].version if specs else None
        if after is not None:
            try:
                Version(after)
            except InvalidVersion:
                raise StackError(f"{after!r} is not a version; write {req.name}==X.Y.Z") from None
        if registry is not None or after is None:
            releases = _releases((registry or Registry()).files(name))
            if not releases:
                raise StackError(f"{req.name} has no release on the registry; move a pin that has")
            if after is None:
                after = str(releases[-1])
            elif Version(after) not in releases:
                below = [str(v) for v in releases if v < Version(after)][-1:]
                above = [str(v) for v in releases if v > Version(after)][:1]
                raise StackError(
                    f"{req.name}=={after} does not exist on the registry; the "
                    f"nearest releases are {' and '.join(below + above)}: name "
                    "one of them"
                )
        before = request.exact(name)
        if before is not None and Version(before) == Version(after):
            print(f"note: {req.name} is pinned to {before} already: nothing moves", file=out)
            continue
        moves.append(Move(name, before, after))
    return moves


def moved(request: Request, moves: Sequence[Move]) -> Request:
    """The request with the moves' pins (extras and markers kept), named after them."""
    requirements = dict(request.requirements)
    for move in moves:
        req = Requirement(str(requirements[move.name]))
        req.specifier = SpecifierSet(f"=={move.after}")
        requirements[move.name] = req
    name = stack_name("_".join([request.name, *(f"{m.name}-{m.after}" for m in moves)]))
    return replace(request, name=name, requirements=requirements)


def predicted_outcome(p: Prediction) -> Outcome:
    return Outcome(
        verdict=p.verdict,
        closed=p.iterable_closed,
        valid_close_frame=p.valid_close_frame,
        layer_finished=p.layer_finished,
        server_closed_tcp=p.server_closed_tcp,
    )


def predicted(versions: Mapping[str, str], layers: Iterable[str] = ()) -> Outcomes:
    """The model's outcome of every cell a stack with these versions has, and of each of
    ``layers``' cells (tests/matrix/test_layers.py) on each build."""
    builds, handler = builds_of(versions), served_handler(versions)
    cells = [
        Cell("", *arm, *col, handler=handler)
        for arm in arms(versions)
        if arm[1] in builds
        for col in COLUMNS
    ]
    cells += [
        Cell("", False, fixed, False, *col, handler=handler, layer=layer)
        for layer in layers
        for fixed in builds
        for col in LAYER_COLUMNS
    ]
    return {c: predicted_outcome(predict_cell(c, versions)) for c in cells}


def run_of(cell: Cell) -> tuple[Any, bool]:
    """The pytest run that observes ``cell``: its arm, or (its layer, its build)."""
    return cell.arm if cell.layer == NO_LAYER else (cell.layer, cell.fixed)


def observed(docs: Mapping[Any, Json]) -> Outcomes:
    """Each recorded cell's outcome, all clients agreeing (records.CellRecord.outcome)."""
    found = {}
    for doc in docs.values():
        for data in doc.get("cells", []):
            record = from_dict(CellRecord, data)
            found[record.cell.on("")] = record.outcome()
    return found


def changes(before: Outcomes, after: Outcomes) -> list[Change]:
    return [
        Change(cell, column, b, a)
        for cell in sorted(before.keys() & after.keys())
        for column in OUTCOME_COLUMNS
        if (b := getattr(before[cell], column)) != (a := getattr(after[cell], column))
    ]


def _value(cell: Cell, column: str, versions: Mapping[str, str]) -> Any:
    return getattr(predicted_outcome(predict_cell(cell, versions)), column)


def cause_of(change: Change, versions: Mapping[str, str], old: Mapping[str, str]) -> str:
    """The model's sentence for the column of the cell after the move (--predict's), or,
    where it has none there (nothing applies any more), the one before it."""

    def sentence(at: Mapping[str, str]) -> str:
        cell, p = change.cell, predict_cell(change.cell, at)
        if change.column == "verdict":
            # a layer's cell: what the layer does to the exchange comes first
            said = cause(dict(at), cell.fixed, p, cell.streaming, cell.handler)
            return p.tcp_cause or p.layer_cause or said if cell.layer != NO_LAYER else said
        if change.column == "closed":
            return f"{handler_words(stack_facts(at, cell.fixed, cell.handler))} (PEP 3333)"
        if change.column == "layer_finished":
            return p.layer_cause
        return p.tcp_cause

    now = sentence(versions)
    return now or (
        f"before the move: {then}; after it, none of this applies"
        if (then := sentence(old))
        else ""
    )


def proof_of(change: Change, before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """Which moved package's rule changes the column in the model, and the release that
    `nox -s "history(<package>)"` proved for it ([tool.history.*.thresholds]), or
    "unproven"; "not predicted" where the model changes nothing."""
    cell, column = change.cell, change.column
    if _value(cell, column, before) == _value(cell, column, after):
        return "not predicted by the model"
    movers = sorted(n for n in after if before.get(n) != after[n] and n in before)
    alone = [
        n
        for n in movers
        if _value(cell, column, {**before, n: after[n]}) != _value(cell, column, before)
    ] or movers
    said = []
    for name in alone:
        low, high = sorted((Version(before[name]), Version(after[name])))
        crossed = [
            (session, v)
            for session, owner in bisected(name)
            for v in owner.get("thresholds", {}).values()
            if low < Version(v) <= high
        ]
        said.append(
            "; ".join(f"proven by history({session}): {v}" for session, v in crossed)
            or f"unproven (no bisection of {name} between {low} and {high})"
        )
    return "; ".join(said)


def bisected(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(history session, its [tool.history] entry) for each bisection of package ``name``:
    its own, and each rule that has it as an axis."""
    return [
        (session, owner)
        for session, entry in HISTORY.items()
        for package, owner in [(session, entry), *entry.get("axes", {}).items()]
        if canonicalize_name(package) == canonicalize_name(name)
    ]


def _shown(value: Any) -> str:
    return {True: "yes", False: "no", None: "n/a"}.get(value, str(value))


def print_changes(
    title: str,
    found: list[Change],
    before: Mapping[str, str],
    after: Mapping[str, str],
    out: TextIO,
    model: tuple[Outcomes, Outcomes] | None = None,
) -> None:
    """The changes side by side, a letter per cause sentence; ``model``: (before, after)
    predicted, to mark with ! an observed change the model does not predict."""
    print(title, file=out)
    if not found:
        print("  no cell or layer observation changes", file=out)
        return
    width = max(len(c.cell.label(omit=("stack",))) for c in found)
    print(
        f"  {'cell':<{width}}  {'observation':<17} {'before':>6}    {'after':<6} "
        f"{'change':<7} cause, proof",
        file=out,
    )
    letters: dict[str, str] = {}
    marked = False
    for c in found:
        text = cause_of(c, after, before)
        letter = letters.setdefault(text, chr(ord("A") + len(letters))) if text else " "
        mark = ""
        if model and getattr(model[1].get(c.cell), c.column, None) != c.after:
            mark, marked = " !", True
        word = {-1: "worse", 1: "better", 0: "changed"}[c.direction]
        print(
            f"  {c.cell.label(omit=('stack',)):<{width}}  {SHOWN.get(c.column, c.column):<17} "
            f"{_shown(c.before):>6} -> {_shown(c.after):<6} {word:<7} {letter}{mark}  "
            f"{proof_of(c, before, after)}",
            file=out,
        )
    for text, letter in letters.items():
        print(f"  {letter}: {text}", file=out)
    if marked:
        print(
            "  !: the model predicts otherwise after the move (the cells' own results say where)",
            file=out,
        )


def _also_moved(before: Mapping[str, str], after: Mapping[str, str], moves: Sequence[Move]) -> str:
    """What else the resolver or the era changed between the two environments."""
    named = {m.name for m in moves}
    return ", ".join(
        f"{n} {before.get(n) or '(none)'} -> {after.get(n) or '(none)'}"
        for n in sorted(before.keys() | after.keys())
        if n not in named and before.get(n) != after.get(n)
    )


def upgrade(
    request: Request,
    file: Path,
    texts: Sequence[str],
    *,
    predict: bool,
    python: str | None,
    work: Path,
    results: Path,
    jobs: int,
    out: TextIO | None = None,
) -> int:
    """The exit status (module docstring); StackError for bad input."""
    out = out or sys.stdout
    started = time.monotonic()
    moves = moves_of(request, file, texts, None if predict else Registry(), out)
    if not moves:
        print("nothing moves: no cell can change", file=out)
        return 0
    after_request = moved(request, moves)
    what = ", ".join(map(str, moves))
    model: tuple[Outcomes, Outcomes] | None = None
    ran: set[Any] = set()  # the runs (arms, layers' builds) both sides ran
    lost: list[str] = []
    if predict:
        before_v, notes = model_versions(request)
        after_v, _ = model_versions(after_request)
        for line in notes:
            print(f"note: {line}", file=out)
        sides = (
            predicted(before_v, request.served_layers()),
            predicted(after_v, after_request.served_layers()),
        )
        title = f"upgrade {request.name}: {what} (the model's prediction)"
    else:
        print(f"== before: {request.name}, as pinned", file=out, flush=True)
        before_run = serve(request, python, work, results, jobs, started)
        print(f"== after: {after_request.name} ({what})", file=out, flush=True)
        try:
            after_run = serve(after_request, python, work, results, jobs)
        except StackError as exc:
            print(
                f"error: the moved stack ({what}) cannot be served: " + " ".join(str(exc).split()),
                file=out,
            )
            return EXIT_WORSE
        before_v, after_v = before_run.versions, after_run.versions
        runs = [{**run.docs, **run.layer_docs} for run in (before_run, after_run)]
        sides = observed(runs[0]), observed(runs[1])
        model = (
            predicted(before_v, {k[0] for k in before_run.layer_docs}),
            predicted(after_v, {k[0] for k in after_run.layer_docs}),
        )
        ran = runs[0].keys() & runs[1].keys()
        # a layer served as pinned that the moved stack cannot serve (its one line above
        # says why): every one of its observations is lost
        lost = sorted({k[0] for k in before_run.layer_docs} - {k[0] for k in after_run.layer_docs})
        title = f"upgrade {request.name}: {what} (observed)"
        for run, word in ((before_run, "before"), (after_run, "after")):
            if run.failed:
                print(
                    f"note: {word} the move, cells disagree with the model or a control "
                    f"failed ({', '.join(run.failed)}): their observations are compared "
                    "as recorded",
                    file=out,
                )
        also = _also_moved(before_run.installed, after_run.installed, moves)
        if also:
            print(f"note: with the move the server environment also changes: {also}", file=out)
    found = changes(*sides)
    print_changes(title, found, before_v, after_v, out, model)
    unobserved = []
    for side, other, word in ((sides[0], sides[1], "after"), (sides[1], sides[0], "before")):
        for cell in sorted(side.keys() - other.keys()):
            if not predict and run_of(cell) in ran:  # its run ran: the cell went unrecorded
                unobserved.append(f"{cell.label(omit=('stack',))} ({word})")
            else:
                print(
                    f"  only {'before' if word == 'after' else 'after'}: "
                    f"{cell.label(omit=('stack',))} (that build or layer is not served "
                    f"{word} the move)",
                    file=out,
                )
    worse = [c for c in found if c.direction < 0]
    cells = len({c.cell for c in found})
    print(
        f"{len(found)} observations change in {cells} cells: {len(worse)} worse, "
        f"{sum(c.direction > 0 for c in found)} better ({time.monotonic() - started:.1f} s)",
        file=out,
    )
    if unobserved:
        print(
            f"error: no observation of {', '.join(unobserved)}: see the arm's *.pytest.log "
            f"in {results}",
            file=out,
        )
    for layer in lost:
        print(f"error: layer {layer} is served as pinned but not after the move", file=out)
    status = EXIT_WORSE if worse or unobserved or lost else 0
    print(
        f"exit {status}: "
        + (
            "an observation gets worse"
            if worse
            else "a layer cannot be served after the move"
            if lost
            else "a cell went unobserved"
            if unobserved
            else "nothing gets worse"
        ),
        file=out,
    )
    return status
