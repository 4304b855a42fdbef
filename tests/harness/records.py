"""What a run records: every results file the sessions write and the report reads.

One dataclass per record, one name per field; the JSON keys are the field names.
Writers build these and call ``write``; readers call ``read`` (or ``load``), which
fails with one line naming the file and the command that rewrites it when the
file's ``schema`` is not ``SCHEMA``.  A reader keeps the fields it knows and
ignores others (a newer writer may add one within a schema version).

Words (one meaning each, everywhere but the nox session parameters):

- **stack**: a set of pins of pyproject.toml's [tool.stacks] (today, seed, deploy);
- **build**: gevent-websocket vanilla or patched (``build_name(fixed)``; the session
  parameter stays ``fixed=``, the wheel's local version label ``+fixed``);
- **arm**: (agent, fixed), one row pair of a stack's grid, what one session runs
  (noxfile ``ARMS``, ``Cell.arm``);
- **cell**: ``tests.harness.cells.Cell``, an arm's (rum, hello_goodbyer, streaming)
  on a stack; its label, slug and parse live there.

Files: ``results/<session slug>.json`` (``SessionResults``: a session's cells and
protocol checks, or why it was skipped), ``results/conformance.json``
(``ConformanceResults``), ``report/history.json`` (``HistoryResults``: a full history
search's output) and, committed, ``tests/data/history/<package>.json`` (``HistoryPackage``:
what history proved, the report's source for the releases its causes cite).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .cells import Cell
from .defects import died_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")
# What load_json names as the fix: a command, or a function of the file's parsed JSON.
Rewrite = str | Callable[[dict[str, Any]], str]

SCHEMA = 2  # 1: the unversioned files before this module (no "schema" key)


class SchemaError(ValueError):
    """A results file this reader cannot read: one line, naming the file and its fix."""


# -- reading and writing -----------------------------------------------------------


def _convert(kind: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as ``kind`` (a type hint of a record's field)."""
    if value is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        return [_convert(args[0], v) for v in value] if args else list(value)
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()} if args else dict(value)
    if kind is Cell:
        return Cell.from_dict(value)
    if is_dataclass(kind):
        return from_dict(kind, value)  # type: ignore[arg-type]  # kind: a field's type, never an instance
    return value


def from_dict(cls: type[Record], data: dict[str, Any]) -> Record:
    """A record from its JSON form; keys it does not know are ignored."""
    hints = typing.get_type_hints(cls)
    known = {f.name: _convert(hints[f.name], data[f.name]) for f in fields(cls) if f.name in data}
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in known and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ValueError(f"{cls.__name__} without {missing}")
    return cls(**known)


def to_dict(record: DataclassInstance) -> dict[str, Any]:
    """The JSON form: the fields, with a Cell as its axes."""
    return asdict(record)


def write(path: str | Path, record: DataclassInstance) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(record), indent=1, sort_keys=True) + "\n")


def load_json(path: str | Path, rewrite: Rewrite) -> dict[str, Any]:
    """The JSON object of a file of this SCHEMA; SchemaError (one line) otherwise.
    ``rewrite``: the command that writes the file, or a function of its parsed JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise SchemaError(f"{path}: not JSON ({exc}): rerun {_rewrite(rewrite, None)}") from None
    found = data.get("schema", 1) if isinstance(data, dict) else None
    if found != SCHEMA:
        raise SchemaError(
            f"{path}: schema {found}, this report reads schema {SCHEMA}: "
            f"rerun {_rewrite(rewrite, data)}"
        )
    return typing.cast("dict[str, Any]", data)  # a dict: only a dict has a schema


def _rewrite(rewrite: Rewrite, data: object) -> str:
    return rewrite(data if isinstance(data, dict) else {}) if callable(rewrite) else rewrite


def read(path: str | Path, cls: type[Record], rewrite: Rewrite) -> Record:
    """``cls`` from the results file at ``path``: load_json, then the record."""
    data = load_json(path, rewrite)
    try:
        return from_dict(cls, data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SchemaError(
            f"{path}: not a {cls.__name__} of schema {SCHEMA} ({exc}): "
            f"rerun {_rewrite(rewrite, data)}"
        ) from None


# -- a cell ----------------------------------------------------------------------------


# A layer_finished value beside True, False and None: the server's call never reached the
# layer for that request (tests/harness/criteria.py), so it has no work it did not finish.
NOT_STARTED = "not started"
Finished = bool | str | None  # True, False, NOT_STARTED, or None: no layer's work to finish


def unfinished(value: Finished) -> bool:
    """A layer that does not finish its request's work: never finished, or never started."""
    return value is False or value == NOT_STARTED


@dataclass
class Observation:
    """One client's run of a cell, judged by the seed's criteria (tests/harness/criteria.py)."""

    client: str
    rid: int | None
    view: bool
    iterator: bool | None
    middleware: bool | None
    verdict: str
    iterable_closed: bool
    valid_close_frame: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    # The cell's tracked layer (Cell.tracked_layer) finished its end-of-request work for
    # this connection before the server reported the request done (``request_done``,
    # app/connections.py); None: no layer, or the layer had no work for it
    # (``layer_skipped``); NOT_STARTED: the server's call never reached it
    # (no ``layer_entered``).
    layer_finished: Finished = None
    # The server closed TCP after the closing handshake (RFC 6455 7.1.1): not when it
    # reported the connection kept for another request (the client's notice,
    # tests/harness/clients.py), nor within the client's bound; seconds it took
    # (None: it did not).
    server_closed_tcp: bool | None = None
    tcp_close_after: float | None = None


# What a cell asserts against the expectation model (tests/harness/model.py Prediction).
COMPARED = (
    "view",
    "iterator",
    "middleware",
    "verdict",
    "iterable_closed",
    "valid_close_frame",
    "layer_finished",
    "server_closed_tcp",
)


# Criteria the model may leave open (None): server_closed_tcp of a handler whose close
# of TCP races ([tool.handlers.<name>.model] tcp_close_races); either outcome agrees.
OPEN_WHEN_NONE = ("server_closed_tcp",)


def agrees(observation: Observation | dict[str, Any], expected: dict[str, Any]) -> bool:
    """The observation is what the model predicts, criterion by criterion."""
    seen, want = comparable(observation), comparable(expected)
    return all(seen[k] == want[k] or (k in OPEN_WHEN_NONE and want[k] is None) for k in COMPARED)


def comparable(observation: Observation | dict[str, Any]) -> dict[str, Any]:
    """The fields of an Observation (or its JSON form) a cell compares with the model."""
    get = observation.get if isinstance(observation, dict) else observation.__getattribute__
    return {k: get(k) for k in COMPARED}


@dataclass
class Phases:
    """Where a cell's time goes, in seconds: the one split every reader shows.

    start: server spawn to its readiness line; exchange: the page's GET and both
    clients (at once); stop: the server's stop and the harness's evaluation.
    """

    start: float
    exchange: float
    stop: float

    @classmethod
    def split(cls, ready_after: float, exchanged_after: float, duration: float) -> Phases:
        """From seconds since the cell started: ready, exchange over, cell over."""
        return cls(
            start=round(ready_after, 3),
            exchange=round(exchanged_after - ready_after, 3),
            stop=round(duration - exchanged_after, 3),
        )


@dataclass
class Outcome:
    """A cell's columns beside its verdict, every client agreeing for a yes: what the
    report draws and deploy_compare compares."""

    verdict: str
    closed: bool
    valid_close_frame: bool
    layer_finished: Finished = None  # None: no layer's work to finish
    server_closed_tcp: bool | None = None


OUTCOME_COLUMNS = tuple(f.name for f in fields(Outcome))


@dataclass
class CellRecord:
    """One cell of a session (tests/matrix/test_cells.py), kept before any assertion."""

    cell: Cell
    seed: str  # the seed's published verdict
    verdict: str  # the first client's
    observed: list[Observation]
    expected: dict[str, Any]  # tests/harness/model.py Prediction, as a dict
    facts: dict[str, Any]  # tests/harness/model.py StackFacts
    controls: dict[str, bool]  # positive controls: name -> held
    versions: dict[str, str | None]
    page_status: int | None
    transcripts: list[dict[str, Any]]  # tests/harness/clients.py Transcript
    server_events: list[dict[str, Any]]
    server_ready_after: float
    client_durations: dict[str, float]
    duration: float
    launcher: str
    phases: Phases
    layer: str | None = None  # Cell.tracked_layer: whose layer_finished this is
    # {status, stderr}: the server process ended before the harness stopped it
    server_died: dict[str, Any] | None = None

    def died_as_allowed(self) -> str:
        """The defect the server died of, where the model allows that death; else ''."""
        defect = str(self.expected.get("may_die") or "")
        died = self.server_died or {}
        status, last_words = died.get("status"), str(died.get("stderr") or "")
        return defect if died and died_of(defect, status, last_words) else ""

    def outcome(self) -> Outcome:
        return Outcome(
            verdict=self.verdict,
            closed=all(o.iterable_closed for o in self.observed),
            valid_close_frame=all(o.valid_close_frame for o in self.observed),
            layer_finished=all_finished(o.layer_finished for o in self.observed),
            server_closed_tcp=_all(o.server_closed_tcp for o in self.observed),
        )


def _all(values: Iterable[bool | None]) -> bool | None:
    """True if every client's is, None if none has one, else False."""
    found = [v for v in values if v is not None]
    return all(found) if found else None


def all_finished(values: Iterable[Finished]) -> Finished:
    """As ``_all``; NOT_STARTED if no client's layer was started."""
    found = [v for v in values if v is not None]
    if found and all(v == NOT_STARTED for v in found):
        return NOT_STARTED
    return all(v is True for v in found) if found else None


@dataclass
class ProtocolRecord:
    """One RFC 6455 / bad-input check of tests/matrix/test_protocol.py on one build."""

    check: str
    nodeid: str
    stack: str
    build: str | None  # build_name(): vanilla or patched
    outcome: str  # passed, failed, skipped, xfailed (the defect seen), xpassed
    defect: str | None  # what vanilla gets wrong (tests/harness/defects.py)
    evidence: str | None
    duration: float


@dataclass
class SessionResults:
    """results/<session slug>.json: one nox session of cells and checks, or its skip."""

    session: str
    status: str  # passed, failed, skipped
    stack: str | None = None  # None: skipped before it knew (noxfile skip_or_fail)
    agent: bool | None = None
    fixed: bool | None = None
    layer: str | None = None  # a layer session's layer ([tool.layers]); None: matrix, seed
    schema: int = SCHEMA
    reason: str | None = None  # why it was skipped
    pytest_exitstatus: int | None = None
    duration: float | None = None
    python: str | None = None
    ci: bool = False
    cells: list[CellRecord] = field(default_factory=list)
    protocol: list[ProtocolRecord] = field(default_factory=list)


def session_rerun(name: str | dict[str, Any]) -> str:
    """The command that rewrites a session's results file: a name, or its parsed JSON."""
    if isinstance(name, dict):
        name = name.get("session") or "<its session>"
    return f'`nox -s "{name}"`'


# -- conformance: Autobahn|Testsuite per (stack, build) -----------------------------------


@dataclass
class NonOkCase:
    case: str
    behavior: str
    behaviorClose: str  # noqa: N815  Autobahn's own name
    description: str = ""
    defect: str | None = None


@dataclass
class ConformanceTarget:
    """One server Autobahn ran against: a stack's build (e.g. today-vanilla)."""

    stack: str
    fixed: bool
    gevent_websocket: str  # the version the server reported
    counts: dict[str, dict[str, int]]  # behavior / behaviorClose -> outcome -> cases
    non_ok: list[NonOkCase]
    report_dir: str
    duration: float
    # Another websocket handler than gevent-websocket: its name and version,
    # and the cases its run leaves out, each with the reason (conformance.DEVIATIONS).
    handler: str | None = None
    handler_version: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass
class ConformanceResults:
    """results/conformance.json (tests/harness/conformance.py)."""

    targets: dict[str, ConformanceTarget]
    wstest: str
    duration: float
    schema: int = SCHEMA


CONFORMANCE_RERUN = "`nox -s conformance`"


# -- history: which release flipped a cell ------------------------------------------------


@dataclass
class HistoryProbe:
    release: str
    purposes: list[str]
    verdicts: dict[str, str]  # cell label -> + or -
    build: dict[str, Any] | None = None


@dataclass
class HistorySkip:
    release: str
    reason: str


@dataclass
class HistoryFlip:
    before: str
    after: str
    skipped_between: list[str]
    changed: dict[str, list[str]]  # cell label -> [verdict before, verdict after]
    proof: dict[str, dict[str, str]]  # release -> cell label -> verdict
    diff: str


@dataclass
class HistoryRange:
    first: str | None
    last: str | None
    low: str | None
    high: str | None
    releases: list[str]


@dataclass
class HistoryPackage:
    """One package's search (tests/harness/history.py); cells named by Cell.label()."""

    package: str
    stack: str
    python: str
    agent: list[bool]
    range: HistoryRange
    watched: list[str]
    spread: int
    probed: list[HistoryProbe]
    skipped: list[HistorySkip]
    flips: list[HistoryFlip]
    thresholds: dict[str, str]
    problems: list[str]
    status: str
    notes: list[str]
    runs: list[dict[str, Any]]
    wall_time: float
    load_before: list[float]
    schema: int = SCHEMA  # a committed package file (tests/data/history/) stands alone
    # an axis of a rule on two packages: the other's release it was searched at
    at: dict[str, str] = field(default_factory=dict)


@dataclass
class HistoryResults:
    """report/history.json: every package searched so far; or, read from
    tests/data/history/, every package whose history is committed."""

    packages: dict[str, HistoryPackage] = field(default_factory=dict)
    schema: int = SCHEMA
    # rules on two packages (tests/data/history/<rule>.json), read beside the packages
    rules: dict[str, HistoryRule] = field(default_factory=dict)

    def proven(self, name: str, package: str, release: str) -> bool:
        """Whether this history proves threshold ``name`` = ``release`` of ``package``."""
        found = self.packages.get(package)
        return bool(found and found.status == "passed" and found.thresholds.get(name) == release)


@dataclass
class HistoryRule:
    """A rule on two packages (tests/harness/history_axes.py): each axis searched at both
    ends of the other's range; tests/data/history/<rule>.json."""

    rule: str
    searches: list[HistoryPackage]
    status: str
    wall_time: float
    schema: int = SCHEMA


def history_rerun(package: str = "<package>") -> str:
    return f'`nox -s "history({package})"`'


def history_update(package: str = "<package>") -> str:
    """The command that rewrites a package's committed history (a full search)."""
    return f'`nox -s "history({package})" -- --update`'
