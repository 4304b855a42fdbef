"""Autobahn|Testsuite against ``python -m app``'s echo: both builds of both stacks.

    python -m tests.harness.conformance --wstest PATH \\
        --target today-vanilla=PYTHON --target today-patched=PYTHON ... \\
        --results results/conformance.json --report report/conformance

Each target is one real server (tests.harness.server.Server, so it never outlives
this process) and one ``wstest -m fuzzingclient`` run of every case against its
``/raw/echo``; the targets run at the same time (a case mostly waits on the
network or on a deliberate pause).  wstest prints "Running test case ID <id>"
as each case starts: no line for STALL_TIMEOUT seconds is a hung case, wstest
is killed and the target fails naming that case.  Autobahn's HTML report stays in
``<report>/<target>/``; its index.json is read into ``results/conformance.json``:
counts by behaviour and close behaviour, and every case that is not OK with
Autobahn's one-line description and the named defect it shows.

The rule (``problems``): the compression cases (12.*, 13.*: permessage-deflate,
which gevent-websocket does not negotiate) run and are UNIMPLEMENTED on every
target; on the patched targets of ``STRICT_STACKS`` every other case is OK or
INFORMATIONAL, behaviour and close; on the other targets every case that is not
maps to a named defect (``defects()``, from tests/harness/defects.py), the
``defect=`` of a protocol check in tests/matrix/test_protocol.py that the fast
test run checks without Autobahn.
"""

from __future__ import annotations

import argparse
import fnmatch
import html
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import IO, Any, NamedTuple, NoReturn

from . import records
from .cells import HANDLERS, build_name, is_patched
from .defects import ECHO_REPR, UTF8_NOT_FAIL_FAST, handler_case_defect
from .paths import REPORT, RESULTS, ROOT
from .records import ConformanceResults
from .server import Server, ServerError

ENDPOINT = "/raw/echo"  # app.web.raw_app: every message back, no Flask in between
STALL_TIMEOUT = 120.0  # s without a new case starting (9.1.6, 16 MB, took 40 s at load 9)
TARGET_TIMEOUT = 600.0  # s for a whole target, whatever its progress
VERSION_TIMEOUT = 60.0  # s for `wstest -a`
STOP_TIMEOUT = 5.0  # s wstest gets after SIGKILL of its group
PROGRESS = re.compile(r"Running test case ID (\S+) for agent")
# Autobahn's own JSON, read as it is: one case of index.json ("behavior", "behaviorClose",
# "reportfile", ...), keyed by case id; only the keys load_index checks are relied on.
Result = dict[str, Any]
Cases = dict[str, Result]
# A target as run_target returns it and problems() reads it: the results document's
# target in its JSON form (records.ConformanceTarget) plus its full "cases".
TargetData = dict[str, Any]


class Target(NamedTuple):
    """One server Autobahn runs against: a stack's gevent-websocket build, or
    today's stack on another handler of [tool.handlers] (``fixed`` then False: no
    gevent-websocket is installed)."""

    stack: str
    fixed: bool
    handler: str | None = None


# <stack>-<build> for gevent-websocket's builds, today-<handler> for the others.
TARGETS = {
    **{
        f"{stack}-{build_name(fixed)}": Target(stack, fixed)
        for stack in ("today", "seed")
        for fixed in (False, True)
    },
    **{f"today-{handler}": Target("today", False, handler) for handler in HANDLERS},
}
# What a target's run departs from (all 517 cases, wstest's default timeouts), and why,
# in prose (like python-websockets' compliance/README): the results list every excluded
# case with its reason and the report shows them.  Bounded so that `nox -t ci` stays
# under its 20 minutes: the two handler targets may add ~90 s to the session.
PERFORMANCE = (
    "9.* (limits and performance: 1-16 MiB messages, 1000s of small ones) is "
    "timed, not judged: each case measures the handler's speed, which `nox -s "
    "bench` measures against patched gevent-websocket in one run instead.  On "
    "this handler it costs minutes: gevent-ws 288 s of Autobahn time (9.7.1 and "
    "9.8.1 wait out 60 s each: an empty message is never echoed, GWS_EMPTY_NOT_SENT, "
    "as 1.1.1 shows), flask-sock over 3 min for 9.1.4 alone"
)
FS_HANG = (
    "flask-sock fails this message where the invalid octets arrive (1007, fail fast), "
    "then keeps TCP (FS_KEEPS_TCP); wstest's client answers a server's close and "
    "waits for the server to drop TCP with no timer of its own (its case would drop "
    "it only after its next fragment, which it never sends): the case never ends.  "
    "The protocol check test_invalid_utf8_fails_the_connection_where_it_arrives "
    "shows the same without Autobahn"
)
FS_DEFLATE = (
    "1000 compressed messages of 8-128 KiB each (sizes 6-18 of every 12.*/13.* "
    "group): flask-sock (wsproto) negotiates permessage-deflate, unlike "
    "gevent-websocket and gevent-ws, so these cases run for real, and each is a "
    "throughput test of deflate in pure Python: 1-15 s a case, 10+ minutes in all.  "
    "Sizes 1-5 (16 B-4 KiB, under 1 s a case) of every group run and judge the "
    "compression"
)
COMPRESSION_GROUPS = [f"12.{n}" for n in range(1, 6)] + [f"13.{n}" for n in range(1, 8)]
DEVIATIONS: dict[str, dict[str, Any]] = {
    "today-gevent-ws": {"exclude": {"9.*": PERFORMANCE}},
    "today-flask-sock": {
        # FS_KEEPS_TCP: the server never drops TCP after the closing handshake, so wstest
        # waits serverConnectionDropTimeout (1 s) in every case to see it not happen;
        # 0.2 s sees the same, 0.8 s sooner.
        "options": {"serverConnectionDropTimeout": 0.2},
        "exclude": {
            **{f"6.4.{n}": FS_HANG for n in range(1, 5)},
            "9.*": PERFORMANCE,
            **{f"{group}.{n}": FS_DEFLATE for group in COMPRESSION_GROUPS for n in range(6, 19)},
        },
    },
}
# A handler target's case that starts no next case for this long hung wstest (a
# non-9 case of either handler took at most 2 s of Autobahn time, 9.* is excluded):
# wstest is killed, the case is listed as excluded with HUNG, and the run resumes after
# it.  gevent-websocket's own targets keep STALL_TIMEOUT and fail on a hang.
HANDLER_STALL = 20.0
MAX_HANGS = 3  # more is no race: the target fails
HUNG = (
    "hung wstest in this run (no next case within {stall:.0f} s): wstest was killed "
    "and the run resumed after it; flask-sock once hung 7.7.4 (a client close with "
    "1003) with both ends idle in ESTABLISHED, and passed it when run alone"
)
STRICT_STACKS = ("today", "seed")  # their patched target must have no case that is not OK
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
PASSING = ("OK", "INFORMATIONAL")
COMPRESSION = ("12", "13")  # permessage-deflate (RFC 7692), not implemented by the handler


def defects() -> dict[str, str]:
    """Case -> the named defect it shows where it is not OK: the xfail reason
    (``defect=``) of the protocol check that shows that defect without Autobahn."""
    return {
        # One frame sent in chops, the invalid UTF-8 in the second: the handler
        # reads the frame whole before it checks it (0.10.1: patch 0008).
        "6.4.3": UTF8_NOT_FAIL_FAST,
        "6.4.4": UTF8_NOT_FAIL_FAST,
        # A client's close with a reason is echoed as repr(bytearray) (0.10.1 on
        # CPython 3: patch 0003): Autobahn reads code 25209 and drops the connection.
        "7.3.4": ECHO_REPR,
        "7.3.5": ECHO_REPR,
    }


# wstest processes started and not yet reaped, for an interrupt
RUNNING: set[subprocess.Popen[bytes]] = set()


class ConformanceError(RuntimeError):
    """A run that could not give results: what was expected, what was seen, where."""


class CaseHung(ConformanceError):
    """wstest started no next case in time: ``case`` is the one it was running."""

    def __init__(self, message: str, case: str) -> None:
        super().__init__(message)
        self.case = case


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(n) for n in case.split("."))


def is_compression(case: str) -> bool:
    return case.split(".", 1)[0] in COMPRESSION


def is_ok(result: Result) -> bool:
    return result["behavior"] in PASSING and result["behaviorClose"] in PASSING


# -- reading Autobahn's report ---------------------------------------------------


def _read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON of one of Autobahn's files, as it is (its callers check its shape)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConformanceError(f"{what}: cannot read {path}: {exc}") from None


def load_index(report_dir: str | Path, agent: str) -> Cases:
    """{case: Autobahn's result} of ``agent`` in ``report_dir``/index.json."""
    index = _read_json(Path(report_dir) / "index.json", f"Autobahn's index of {agent}")
    if agent not in index:
        raise ConformanceError(
            f"{report_dir}/index.json has no results for agent {agent!r} (it has {sorted(index)})"
        )
    cases: Cases = index[agent]
    if not cases:
        raise ConformanceError(f"{report_dir}/index.json: agent {agent!r} ran no case")
    for case, result in cases.items():
        missing = [k for k in ("behavior", "behaviorClose", "reportfile") if k not in result]
        if missing or not re.fullmatch(r"\d+(\.\d+)*", case):
            raise ConformanceError(
                f"{report_dir}/index.json: case {case!r} of {agent!r} is "
                f"not an Autobahn result (missing {missing})"
            )
    return cases


def description(report_dir: str | Path, result: Result) -> str:
    """The first line of Autobahn's description of a case, as plain text."""
    case = _read_json(Path(report_dir) / result["reportfile"], "a case report")
    text = re.sub(r"<[^>]+>", " ", case.get("description", ""))
    first = html.unescape(text).strip().splitlines()
    return " ".join(first[0].split()) if first else ""


def counts(cases: Cases, field: str) -> dict[str, int]:
    found = dict.fromkeys(BEHAVIORS, 0)
    for result in cases.values():
        found[result[field]] = found.get(result[field], 0) + 1
    return found


def summarize(
    report_dir: str | Path, cases: Cases, named: dict[str, str] | None = None
) -> dict[str, Any]:
    """counts and non_ok of one target (the results document's fields)."""
    named = defects() if named is None else named
    non_ok = [
        {
            "case": case,
            "behavior": r["behavior"],
            "behaviorClose": r["behaviorClose"],
            "description": description(report_dir, r),
            "defect": None if is_compression(case) else named.get(case),
        }
        for case, r in sorted(cases.items(), key=lambda kv: case_key(kv[0]))
        if not is_ok(r)
    ]
    return {
        "counts": {
            "behavior": counts(cases, "behavior"),
            "behaviorClose": counts(cases, "behaviorClose"),
        },
        "non_ok": non_ok,
    }


# -- the rule ---------------------------------------------------------------------


def target_defects(target: TargetData) -> dict[str, str]:
    """{case: named defect} for ``target`` (a results document's target): gevent-websocket's
    defects(), or the handler's (defects.HANDLER_CASE_DEFECTS) for each case not OK."""
    handler = target.get("handler")
    if not handler:
        return defects()
    return {
        case: defect
        for case, result in target["cases"].items()
        if (defect := handler_case_defect(handler, case, result))
    }


def expand_excluded(targets: dict[str, TargetData]) -> None:
    """Each target's excluded patterns (DEVIATIONS: "9.*") as the cases they stand for:
    those the other targets ran (gevent-websocket's targets run every case)."""
    ran = set().union(*(t["cases"] for t in targets.values())) if targets else set()
    for target in targets.values():
        target["excluded"] = {
            case: reason
            for pattern, reason in (target.get("excluded") or {}).items()
            for case in (
                sorted((c for c in ran if fnmatch.fnmatchcase(c, pattern)), key=case_key)
                or [pattern]
            )
            if case not in target["cases"]
        }


def problems(
    targets: dict[str, TargetData],
    named: dict[str, str] | None = None,
) -> list[str]:
    """Everything that breaks the rule, one sentence each (empty: the run passes).

    ``targets`` is the results document's "targets" with each target's full case list
    under "cases" ({case: {"behavior", "behaviorClose"}}).
    """
    named = defects() if named is None else named
    found = []
    # A target's excluded cases (DEVIATIONS) count as run: the results list them.
    case_sets = {
        name: set(target["cases"]) | set(target.get("excluded") or {})
        for name, target in targets.items()
    }
    if len({frozenset(s) for s in case_sets.values()}) > 1:
        union = set().union(*case_sets.values())
        for name, cases in case_sets.items():
            if cases != union:
                missing = sorted(union - cases, key=case_key)
                found.append(
                    f"{name}: {len(missing)} case(s) not run that other targets ran: "
                    f"{', '.join(missing[:10])}"
                )
    for name, target in targets.items():
        strict = target["fixed"] and target["stack"] in STRICT_STACKS
        handler = target.get("handler")
        groups = {case.split(".", 1)[0] for case in target["cases"]}
        if not set(COMPRESSION) <= groups:
            found.append(
                f"{name}: the compression cases ({', '.join(COMPRESSION)}.*) did not "
                "run: they must run and be reported, not hidden"
            )
        for case in sorted(target["cases"], key=case_key):
            result = target["cases"][case]
            seen = f"behaviour {result['behavior']}, close {result['behaviorClose']}"
            if handler:
                continue  # another handler's cases are reported (each with its defect, if
                # named), not failed on: the question is which handler, not whether it fails
            if is_compression(case):
                if result["behavior"] != "UNIMPLEMENTED" or result["behaviorClose"] not in PASSING:
                    found.append(
                        f"{name}: case {case} (permessage-deflate): expected "
                        f"UNIMPLEMENTED with a clean close, seen {seen}"
                    )
            elif is_ok(result):
                continue
            elif strict:
                found.append(
                    f"{name}: case {case}: expected OK or INFORMATIONAL (behaviour and "
                    f"close) on a patched build, seen {seen}"
                )
            elif case not in named:
                found.append(
                    f"{name}: case {case} ({seen}) maps to no named defect: add it to "
                    "defects() in tests/harness/conformance.py with the protocol check "
                    "(tests/matrix/test_protocol.py) that shows it without Autobahn"
                )
    return found


# -- running wstest -----------------------------------------------------------------


def wstest_version(wstest: str) -> str:
    try:
        out = subprocess.run(
            [wstest, "-a"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConformanceError(
            f"cannot run `{wstest} -a` ({exc}); `nox -s conformance` installs wstest"
        ) from None
    found = re.search(r"AutobahnTestSuite\s+(\S+)", out.stdout + out.stderr)
    if out.returncode != 0 or not found:
        raise ConformanceError(
            f"`{wstest} -a` (exit {out.returncode}) did not name its "
            f"version: {(out.stdout + out.stderr).strip()[-300:]!r}"
        )
    return found.group(1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(STOP_TIMEOUT)


def run_fuzzingclient(
    wstest: str,
    spec_path: str | Path,
    *,
    name: str,
    stall: float = STALL_TIMEOUT,
    bound: float = TARGET_TIMEOUT,
    log: IO[str] | None = None,
) -> list[str]:
    """Run ``wstest -m fuzzingclient``, watching its progress; returns the cases it started.

    No new case for ``stall`` seconds, or more than ``bound`` seconds in all,
    kills wstest's process group (its own session) and raises ConformanceError
    naming the case that was running.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [str(Path(wstest).resolve()), "-m", "fuzzingclient", "-s", str(spec_path)],
            cwd=Path(spec_path).parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise ConformanceError(
            f"{name}: cannot start wstest ({exc}); `nox -s conformance` installs it"
        ) from None
    RUNNING.add(proc)
    assert proc.stdout is not None  # stdout=PIPE
    stdout = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()  # None: wstest closed its output

    def read() -> None:
        for raw in iter(stdout.readline, b""):
            lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: list[str] = []
    cases: list[str] = []
    current: str | None = None
    last = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            wait = min(last + stall, started + bound) - now
            try:
                line = lines.get(timeout=max(wait, 0))
            except queue.Empty:
                stalled = last + stall <= started + bound
                why = (
                    f"no new case for {stall:.0f} s (bound)"
                    if stalled
                    else f"the target ran over {bound:.0f} s (bound)"
                )
                message = (
                    f"{name}: case {current or '(none started)'} hung: {why}; wstest killed "
                    f"after {len(cases)} case(s); its last output:\n    " + "\n    ".join(tail[-8:])
                )
                if stalled and current:
                    raise CaseHung(message, current) from None
                raise ConformanceError(message) from None
            if line is None:
                break
            if log is not None:
                log.write(line + "\n")
            tail = (tail + [line])[-20:]
            progress = PROGRESS.search(line)
            if progress:
                current, last = progress.group(1), time.monotonic()
                cases.append(current)
        proc.wait(STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        RUNNING.discard(proc)
        stdout.close()
    if proc.returncode != 0:
        raise ConformanceError(
            f"{name}: wstest exited with status {proc.returncode} after "
            f"case {current}; its last output:\n    " + "\n    ".join(tail[-8:])
        )
    return cases


def _wstest_run(
    name: str,
    server: Server,
    wstest: str,
    report_dir: Path,
    logs: Path,
    deviation: dict[str, Any],
    hung: dict[str, str],
) -> list[str]:
    """One wstest run of every case but the excluded and ``hung`` ones into ``report_dir``;
    the cases it started."""
    shutil.rmtree(report_dir, ignore_errors=True)  # never read an earlier run's index.json
    report_dir.mkdir(parents=True)
    spec = {
        "outdir": str(report_dir.resolve()),
        "cases": ["*"],
        "exclude-cases": sorted({*deviation.get("exclude", {}), *hung}),
        "exclude-agent-cases": {},
        "servers": [
            {
                "agent": name,
                "url": server.ws_url + ENDPOINT,
                "options": deviation.get("options", {}),
            }
        ],
    }
    spec_path = logs / f"conformance-{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    # line-buffered: the log shows the case running now, for a person watching a long run
    with open(logs / f"conformance-{name}.wstest.log", "a", encoding="utf-8", buffering=1) as log:
        return run_fuzzingclient(
            wstest,
            spec_path,
            name=name,
            log=log,
            stall=HANDLER_STALL if server.handler else STALL_TIMEOUT,
        )


def run_target(
    name: str,
    python: str,
    wstest: str,
    report_dir: Path,
    logs: Path,
) -> TargetData:
    """One target: its server, every case, and its part of the results document."""
    stack, fixed, handler = TARGETS[name]
    deviation = DEVIATIONS.get(name, {})
    excluded = deviation.get("exclude", {})
    started = time.monotonic()
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"conformance-{name}.wstest.log").unlink(missing_ok=True)
    with Server(python, log_dir=logs, name=f"conformance-{name}", handler=handler) as server:
        assert server.ready is not None and server.proc is not None  # started, and ready
        version = server.versions.get("gevent-websocket") or ""
        described = server.ready.get("handler") or {}
        if handler and described.get("name") != handler:
            raise ConformanceError(
                server.explain(
                    f"{name} is the {handler} target, but the server runs "
                    f"{described.get('name') or 'no named handler'}"
                )
            )
        if not handler and is_patched(version) != fixed:
            raise ConformanceError(
                server.explain(
                    f"{name} is the {build_name(fixed)} target, but the server runs "
                    f"gevent-websocket {version or '(none)'}"
                )
            )
        hung: dict[str, str] = {}  # case -> HUNG
        while True:
            try:
                started_cases = _wstest_run(name, server, wstest, report_dir, logs, deviation, hung)
                break
            except CaseHung as exc:
                # A handler's hang is a finding, not the end of its run: the case is listed
                # (HUNG) and the run starts again without it (wstest writes its index only
                # at the end, so the cases before it run again).
                if not handler or len(hung) >= MAX_HANGS:
                    raise ConformanceError(server.explain(str(exc))) from None
                hung[exc.case] = HUNG.format(stall=HANDLER_STALL)
                print(
                    f"{name}: case {exc.case} hung wstest; run again without it",
                    file=sys.stderr,
                    flush=True,
                )
            except ConformanceError as exc:
                raise ConformanceError(server.explain(str(exc))) from None
        if server.proc.poll() is not None:
            raise ConformanceError(server.explain(f"{name}: the server died during the run"))
    cases = load_index(report_dir, name)
    not_reported = sorted(set(started_cases) - set(cases), key=case_key)
    if not_reported:
        raise ConformanceError(
            f"{name}: wstest started {len(not_reported)} case(s) its "
            f"index.json does not report: {', '.join(not_reported[:10])}"
        )
    target = {
        "handler": handler,
        "cases": {c: {k: r[k] for k in ("behavior", "behaviorClose")} for c, r in cases.items()},
    }
    return {
        "stack": stack,
        "fixed": fixed,
        "gevent_websocket": version,
        **summarize(report_dir, cases, target_defects(target)),
        "handler": handler,
        "handler_version": described.get("version") if handler else None,
        "excluded": {**excluded, **hung},
        "report_dir": _shown(report_dir),
        "duration": round(time.monotonic() - started, 1),
        "cases": target["cases"],
    }


def _shown(path: str | Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run(
    pythons: dict[str, str], wstest: str, results: str | Path, report: str | Path, logs: str | Path
) -> tuple[ConformanceResults, list[str]]:
    """Every target at once; writes ``results`` (without the rule's per-case lists)."""
    started = time.monotonic()
    Path(results).unlink(missing_ok=True)  # a failed run must not leave an earlier one behind
    version = wstest_version(wstest)
    with ThreadPoolExecutor(max_workers=len(pythons)) as pool:
        futures = {
            name: pool.submit(run_target, name, python, wstest, Path(report) / name, Path(logs))
            for name, python in pythons.items()
        }
        try:
            for future in futures.values():
                future.exception()  # wait, interruptibly
        except BaseException:
            # Ctrl-C or SIGTERM: every wstest and server goes now; each target's
            # thread then sees its process end, stops its server and returns.
            for proc in list(RUNNING):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            Server.signal_all(signal.SIGTERM)
            raise
    targets, errors = {}, []
    for name, future in futures.items():
        try:
            targets[name] = future.result()
        except (ConformanceError, ServerError) as exc:
            errors.append(str(exc))
    expand_excluded(targets)
    found = problems(targets) if targets else []
    document = records.from_dict(
        ConformanceResults,
        {
            "targets": {
                name: {k: v for k, v in target.items() if k != "cases"}
                for name, target in targets.items()
            },
            "wstest": version,
            "duration": round(time.monotonic() - started, 1),
        },
    )
    records.write(results, document)
    return document, errors + found


def render_summary(document: ConformanceResults) -> str:
    """A few lines per target for the terminal (the report session renders the rest)."""
    lines = [f"Autobahn|Testsuite {document.wstest}, {document.duration:.0f} s"]
    for name, target in document.targets.items():
        behavior = ", ".join(f"{k} {v}" for k, v in target.counts["behavior"].items())
        close = ", ".join(f"{k} {v}" for k, v in target.counts["behaviorClose"].items())
        served = (
            f"{target.handler} {target.handler_version}"
            if target.handler
            else f"gevent-websocket {target.gevent_websocket}"
        )
        excluded = f", {len(target.excluded)} excluded" if target.excluded else ""
        lines.append(
            f"{name} ({served}, {target.duration:.0f} s{excluded}): "
            f"behaviour {behavior}; close {close}"
        )
        for entry in target.non_ok:
            if not is_compression(entry.case):
                lines.append(
                    f"    {entry.case:8} {entry.behavior}/{entry.behaviorClose}"
                    f"  {entry.description}  [{entry.defect or 'no named defect'}]"
                )
    return "\n".join(lines)


def _target_option(value: str) -> tuple[str, str]:
    name, sep, python = value.partition("=")
    if not sep or name not in TARGETS or not python:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected TARGET=PYTHON with TARGET one of {', '.join(TARGETS)}"
        )
    return name, python


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    # nox stops a session with SIGTERM: unwind like Ctrl-C, so nothing started here outlives it.
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.conformance", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--wstest", required=True, help="the wstest script (CPython 2.7 env)")
    parser.add_argument(
        "--target",
        dest="targets",
        action="append",
        type=_target_option,
        required=True,
        help="TARGET=PYTHON: the interpreter whose env serves that target",
    )
    parser.add_argument("--results", type=Path, default=RESULTS / "conformance.json")
    parser.add_argument("--report", type=Path, default=REPORT / "conformance")
    parser.add_argument("--logs", type=Path, default=RESULTS / "conformance.logs")
    args = parser.parse_args(argv)
    load = os.getloadavg()  # the machine may be shared: timings mean little without it
    try:
        document, found = run(dict(args.targets), args.wstest, args.results, args.report, args.logs)
    except ConformanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(
            f"interrupted ({exc or 'Ctrl-C'}): servers and wstest stopped; "
            f"{args.results} not written",
            file=sys.stderr,
        )
        return 130
    print(render_summary(document))
    print(
        "load average (1, 5, 15 min): before {}, after {}".format(
            *(", ".join(f"{v:.2f}" for v in figures) for figures in (load, os.getloadavg()))
        )
    )
    print(f"results: {args.results}; Autobahn's reports: {args.report}/<target>/index.html")
    if found:
        print(f"\n{len(found)} problem(s):\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
