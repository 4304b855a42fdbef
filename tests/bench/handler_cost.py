"""``python -m tests.bench.handler_cost``: what each handler costs against patched
gevent-websocket, measured in one run.

    python -m tests.bench.handler_cost --python PY --patched-path DIR \\
        --handler gevent-ws=PY --handler flask-sock=PY --out report/bench.json

Servers (agent off, ``python -m app``): vanilla gevent-websocket (``--python``),
patched (the same interpreter, the patched wheel first on PYTHONPATH, as
tests/bench/throughput.py does), and each ``--handler`` from its own env (the
handler's pins, no gevent-websocket).  Each readiness line must name what it runs.

- echo: round trips per second on ``/raw/echo`` (no Flask) and ``/echo`` (the
  Flask view), with one client and with ``--clients`` at once; every round
  measures every (server, route, clients) once in a shuffled order (a fixed
  seed per round) and each figure is divided by patched's of the same round.
- phases: each of the 8 cells (agent off) on a fresh server, both real clients,
  split as the cells split it (records.Phases: start, exchange, stop); the
  ratio is the handler's median over patched's.

The figures go under ``"handlers"`` of ``--out`` (report/bench.json): the rest of
that file, if `nox -s bench` wrote it, is kept; the which-handler table
(tests/harness/handlers.py) reads ``handlers.echo``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.bench.throughput import pythonpath, round_trips
from tests.harness import clients
from tests.harness.cells import DEFAULT_HANDLER, HANDLERS, Cell, build_name, is_patched
from tests.harness.records import SCHEMA
from tests.harness.server import Server

REFERENCE = build_name(True)  # patched gevent-websocket: every ratio's denominator
ROUTES = ("/raw/echo", "/echo")
MANY_TIMEOUT = 120.0  # s for every concurrent echo client to finish (bound)
PHASES = ("start", "exchange", "stop")
MANY = 10  # clients at once: the "many clients" figure
CELL_ROUNDS = 2  # each of the 8 cells per server


class Arm:
    """One server configuration: ``name`` is "vanilla", "patched" or a handler."""

    def __init__(self, name: str, python: str, patched_path: str | None = None) -> None:
        self.name, self.python, self.patched_path = name, python, patched_path
        self.handler = None if name in (build_name(False), REFERENCE) else name

    def server(
        self, log_dir: Path, label: str, rum: bool = False, hello_goodbyer: bool = False
    ) -> Server:
        return Server(
            self.python,
            log_dir=log_dir,
            name=f"{label}-{self.name}",
            handler=self.handler,
            rum=rum,
            hello_goodbyer=hello_goodbyer,
        )

    def start(self, server: Server) -> Server:
        with pythonpath(self.patched_path):
            server.start()
        self.check(server)
        return server

    def check(self, server: Server) -> None:
        """The server runs what this arm names (a control: a ratio of the wrong
        servers would read as a finding)."""
        if self.handler:
            ran = ((server.ready or {}).get("handler") or {}).get("name")
            ok = ran == self.handler
        else:
            ran = server.versions.get("gevent-websocket") or "(none)"
            ok = is_patched(ran) == (self.name == REFERENCE)
        if not ok:
            raise AssertionError(server.explain(f"the {self.name} arm's server runs {ran}"))


def echo_rate(url: str, at_once: int, seconds: float, max_trips: int) -> float:
    """Round trips per second, summed over ``at_once`` connections at the same time."""
    if at_once == 1:
        trips, elapsed = round_trips(url, seconds, max_trips)
        return trips / elapsed
    done: list[tuple[int, float]] = []
    errors: list[str] = []

    def one() -> None:
        try:
            done.append(round_trips(url, seconds, max_trips))
        except Exception as exc:  # a handler that drops clients is a finding: named below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, daemon=True) for _ in range(at_once)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + MANY_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if errors or len(done) != at_once:
        raise AssertionError(
            f"{url}: {len(done)}/{at_once} echo clients finished within "
            f"{MANY_TIMEOUT:.0f} s (bound); errors: {errors[:3]}"
        )
    return sum(trips / elapsed for trips, elapsed in done)


def _shuffled(items: list[Any], rounds: int) -> Iterator[Any]:
    for r in range(rounds):
        yield from random.Random(r).sample(items, len(items))


def echo(
    arms: list[Arm], rounds: int, seconds: float, max_trips: int, many: int, log_dir: Path
) -> list[dict[str, Any]]:
    """One row per (arm, route, clients): rates per round and their ratio to patched's."""
    servers: dict[str, Server] = {}
    keys = [(arm.name, route, n) for arm in arms for route in ROUTES for n in (1, many)]
    rates: dict[tuple[str, str, int], list[float]] = {key: [] for key in keys}
    try:
        for arm in arms:
            servers[arm.name] = arm.start(arm.server(log_dir, "echo"))
        for name, route, n in _shuffled(keys, rounds):
            url = f"{servers[name].ws_url}{route}?client=bench"
            rates[(name, route, n)].append(echo_rate(url, n, seconds, max_trips))
    finally:
        for server in servers.values():
            server.stop()
    rows = []
    for (name, route, n), values in rates.items():
        ratios = sorted(v / r for v, r in zip(values, rates[(REFERENCE, route, n)], strict=True))
        rows.append(
            {
                "handler": name,
                "route": route,
                "clients": n,
                "rates": [round(v) for v in values],
                "rate_median": round(statistics.median(values)),
                "ratio_vs_patched": [round(x, 3) for x in ratios],
                "ratio_median": round(statistics.median(ratios), 3),
            }
        )
    return rows


def one_cell(arm: Arm, cell: Cell, log_dir: Path) -> dict[str, float]:
    """A cell's phases as tests/matrix/test_cells.py splits them (records.Phases); the
    caller sets the arm's PYTHONPATH around it (the server starts in here)."""
    started = time.monotonic()
    server = arm.server(
        log_dir, f"cell-{cell.slug()}", rum=cell.rum, hello_goodbyer=cell.hello_goodbyer
    )
    with server:
        arm.check(server)
        ready = time.monotonic() - started
        server.get("/")
        with ThreadPoolExecutor(len(clients.CLIENTS)) as pool:
            list(
                pool.map(
                    lambda c: clients.run(c, f"{server.ws_url}{cell.route}?client={c}"),
                    clients.CLIENTS,
                )
            )
        exchanged = time.monotonic() - started
    return {
        "start": ready,
        "exchange": exchanged - ready,
        "stop": time.monotonic() - started - exchanged,
    }


def phases(arms: list[Arm], rounds: int, log_dir: Path) -> dict[str, Any]:
    """{arm: {phase: median s, "ratio": {phase: median / patched's}}} over the 8 cells."""

    def cells(arm: Arm) -> list[Cell]:
        return [
            Cell(
                "today",
                False,
                arm.name == REFERENCE,
                rum,
                hello_goodbyer,
                streaming,
                arm.handler or DEFAULT_HANDLER,
            )
            for rum in (False, True)
            for hello_goodbyer in (False, True)
            for streaming in (False, True)
        ]

    found: dict[str, dict[str, list[float]]] = {a.name: {p: [] for p in PHASES} for a in arms}
    by_name = {a.name: a for a in arms}
    for name, cell in _shuffled([(a.name, c) for a in arms for c in cells(a)], rounds):
        arm = by_name[name]
        with pythonpath(arm.patched_path):
            split = one_cell(arm, cell, log_dir)
        for phase, value in split.items():
            found[name][phase].append(value)
    medians = {
        name: {p: statistics.median(v) for p, v in split.items()} for name, split in found.items()
    }
    return {
        name: {
            **{p: round(m[p], 3) for p in PHASES},
            "n": len(found[name]["start"]),
            "ratio": {p: round(m[p] / medians[REFERENCE][p], 3) for p in PHASES},
        }
        for name, m in medians.items()
    }


def measure(
    python: str,
    patched_path: str,
    handlers: dict[str, str],
    rounds: int,
    seconds: float,
    max_trips: int,
    many: int,
    cell_rounds: int,
    log_dir: Path,
    step: Callable[[str], None] = print,
) -> dict[str, Any]:
    arms = [
        Arm(build_name(False), python),
        Arm(REFERENCE, python, patched_path),
        *(Arm(name, handler_python) for name, handler_python in handlers.items()),
    ]
    started = time.monotonic()
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load = list(os.getloadavg())  # a shared machine: the figures mean little without it
    step("handlers: echo throughput")
    echo_rows = echo(arms, rounds, seconds, max_trips, many, log_dir)
    step("handlers: per-cell phases")
    split = phases(arms, cell_rounds, log_dir)
    return {
        "reference": REFERENCE,
        "payload_bytes": 32,
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "clients_many": many,
        "cell_rounds": cell_rounds,
        "echo": echo_rows,
        "phases": split,
        "duration": round(time.monotonic() - started, 1),
        "started": when,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load": {"before": load, "after": list(os.getloadavg())},
    }


def render(doc: dict[str, Any]) -> str:
    """The markdown section of report/bench.md: one line per figure."""
    lines = [
        f"## Handlers against {doc['reference']} gevent-websocket",
        "",
        f"Echo round trips/s (32-byte text), {doc['rounds']} rounds; ratio = the "
        "handler's over patched's in the same round (median).",
        "",
        "| server | route | clients | median /s | ratio vs patched |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['handler']} | `{r['route']}` | {r['clients']} | {r['rate_median']} | "
        f"{r['ratio_median']:.3f} |"
        for r in doc["echo"]
    ]
    lines += [
        "",
        f"Per-cell phases (8 cells x {doc['cell_rounds']}, agent off, median s; ratio vs patched):",
        "",
        "| server | start | exchange | stop | n |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | "
        + " | ".join(f"{p[k]:.3f} ({p['ratio'][k]:.2f}x)" for k in PHASES)
        + f" | {p['n']} |"
        for name, p in doc["phases"].items()
    ]
    return "\n".join(lines) + "\n"


def write(out: Path, found: dict[str, Any]) -> dict[str, Any]:
    """``found`` as bench.json's "handlers", beside whatever `nox -s bench` wrote there;
    bench.md beside it rendered again from the whole.  Returns the whole."""
    from tests.bench import report  # it renders this module's section: import when used

    # a bench.json of its own when `nox -s bench` wrote none, of this SCHEMA (one written
    # by an older bench keeps its schema, and the report asks for a new bench run)
    doc = (
        json.loads(out.read_text())
        if out.exists()
        else {"schema": SCHEMA, **{k: found[k] for k in ("started", "machine", "load")}}
    )
    doc["handlers"] = found
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    (out.parent / "bench.md").write_text(report.render(doc))
    return doc


def handler_option(value: str) -> tuple[str, str]:
    name, sep, python = value.partition("=")
    if not sep or name not in HANDLERS or name == DEFAULT_HANDLER or not python:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected NAME=PYTHON with NAME one of "
            f"{', '.join(HANDLERS)} ([tool.handlers])"
        )
    return name, python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.handler_cost", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--python",
        required=True,
        help="vanilla gevent-websocket's server interpreter (today's stack)",
    )
    parser.add_argument(
        "--patched-path", required=True, help="the patched gevent-websocket (pip --target)"
    )
    parser.add_argument(
        "--handler",
        dest="handlers",
        action="append",
        required=True,
        type=handler_option,
        help="NAME=PYTHON: that handler's server env",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--max-trips", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=MANY, help="the 'many clients' figure")
    parser.add_argument("--cell-rounds", type=int, default=CELL_ROUNDS)
    parser.add_argument("--logs", type=Path, default=Path("results/bench-handlers.logs"))
    parser.add_argument("--out", type=Path, default=Path("report/bench.json"))
    args = parser.parse_args(argv)
    found = measure(
        args.python,
        args.patched_path,
        dict(args.handlers),
        args.rounds,
        args.seconds,
        args.max_trips,
        args.clients,
        args.cell_rounds,
        args.logs,
    )
    write(args.out, found)
    print(render(found))
    print(f'written: {args.out} ("handlers")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
