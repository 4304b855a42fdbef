"""``python -m tests.bench.handlers_probe``: the 8 cells and echo throughput per handler.

Issue 21's first evidence, before the harness has a handler dimension: for each
``--handler`` of ``python -m app`` (app/handlers.py), agent off and on, the 8
cells (rum x hello_goodbyer x streaming), each on a fresh server with both real
clients, judged by the seed's criteria (tests/harness/criteria.py), with the
close() the server made on the application's iterable, the close frame each
client saw, and the positive controls that apply (those of
tests/matrix/test_cells.py, plus: the handler in use is the one named).  Then
echo round trips per second on ``/raw/echo`` and ``/echo``, one client and
``--clients`` at once, each handler against patched gevent-websocket in the same
round (``--patched-path``: a ``pip install --target`` of the patched wheel, first
on the server's PYTHONPATH, as tests/bench/throughput.py does).

Run it with a nox session's interpreter that has the handlers installed:

    .nox/matrix-agent-true-fixed-false/bin/python -m tests.bench.handlers_probe \\
        --patched-path /tmp/patched --out results/handlers-probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.throughput import pythonpath, round_trips
from tests.harness import clients
from tests.harness.cells import BOOLS, TOOL, Cell
from tests.harness.criteria import evaluate
from tests.harness.server import Server

HANDLERS = ("gevent-websocket", "gevent-ws", "flask-sock")
WEBSOCKET_CLASS = {"gevent-websocket": "geventwebsocket.websocket.WebSocket",
                   "gevent-ws": "gevent_ws.WebSocket",
                   "flask-sock": "simple_websocket.ws.Server"}
MANY_TIMEOUT = 120.0  # s for every concurrent echo client to finish


def pinned_version(handler):
    if handler == "gevent-websocket":
        return TOOL["stacks"]["today"]["gevent-websocket"]["version"]
    return TOOL["handlers"][handler]["version"]


def controls(cell, handler, server, page, transcripts, patched):
    ready = server.ready
    described = ready.get("handler") or {}
    accepted = [e for e in server.events if e["event"] == "websocket_accepted"]
    requests = [e for e in server.events if e["event"] == "request"]
    want = pinned_version(handler) + ("+fixed" if patched else "")
    return {
        "hello_goodbyer": ("Goodbye from the page!" in page) == cell.hello_goodbyer,
        "rum_script": ("NREUM" in page) == (cell.agent and cell.rum),
        "agent loaded": ready.get("agent_loaded") == cell.agent,
        "agent active": ready.get("agent_active") == cell.agent,
        "served by the app process": bool(requests) and all(
            e.get("pid") == ready.get("pid") == server.proc.pid for e in requests),
        "websocket handshake": not [e for t in transcripts for e in t.events
                                    if e["event"] == "error" and e.get("stage") == "connect"],
        "no outbound connection": not [e for e in server.events if e["event"] == "outbound"
                                       and e.get("kind") != "udp_route_lookup"],
        # The new control: the handler named is the one installed, imported and used.
        "handler named": described.get("name") == handler
        and described.get("version") == want
        and bool(described.get("module_file"))
        # <env>/bin/python is a symlink: the env is its parent's parent, unresolved.
        and Path(described["module_file"]).resolve().is_relative_to(
            Path(server.python).parent.parent.resolve()) != patched,
        "handler upgraded every websocket": len(accepted) == len(transcripts) and all(
            e["websocket_class"] == WEBSOCKET_CLASS[handler] for e in accepted),
    }


def run_cell(python, handler, agent, rum, hello_goodbyer, streaming, log_dir, patched):
    cell = Cell("today", agent, patched, rum, hello_goodbyer, streaming)
    name = f"{handler}{'+fixed' if patched else ''}-{cell.slug}"
    server = Server(python, agent=agent, rum=rum, hello_goodbyer=hello_goodbyer,
                    log_dir=log_dir, name=name, handler=handler)
    with server:
        _status, page = server.get("/")
        with ThreadPoolExecutor(len(clients.CLIENTS)) as pool:
            transcripts = list(pool.map(
                lambda c: clients.run(c, f"{server.ws_url}{cell.route}?client={c}"),
                clients.CLIENTS))
    observed = [evaluate(cell, t, server.events) for t in transcripts]
    checks = controls(cell, handler, server, page, transcripts, patched)
    return {
        "handler": handler + ("+fixed" if patched else ""), "cell": cell.as_dict(),
        "verdicts": {o.client: o.verdict for o in observed},
        "observed": [o.as_dict() for o in observed],
        "iterable_close_calls": {o.client: o.evidence["close"]["iterable_close_calls"]
                                 for o in observed},
        "close_frames": {t.client: t.close for t in transcripts},
        "controls_failed": [k for k, ok in checks.items() if not ok],
        "ready_handler": server.ready.get("handler"),
        "server_stderr": server.stderr_text(1500),
    }


def echo_rates(url, clients_at_once, seconds, max_trips):
    """Round trips per second summed over ``clients_at_once`` connections at once."""
    if clients_at_once == 1:
        trips, elapsed = round_trips(url, seconds, max_trips)
        return trips / elapsed
    results, errors = [], []

    def one():
        try:
            results.append(round_trips(url, seconds, max_trips))
        except Exception as exc:  # reported, not hidden: a handler that drops clients
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients_at_once)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + MANY_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if errors or len(results) != clients_at_once:
        raise AssertionError(f"{url}: {len(results)}/{clients_at_once} echo clients finished "
                             f"within {MANY_TIMEOUT:.0f} s (bound); errors {errors[:3]}")
    return sum(trips / elapsed for trips, elapsed in results)


def throughput(python, patched_path, handlers, rounds, seconds, max_trips, many, log_dir):
    import random

    servers = {}
    try:
        for handler in ("gevent-websocket+fixed", *handlers):
            patched = handler.endswith("+fixed")
            server = Server(python, log_dir=log_dir, name=f"echo-{handler}",
                            handler=handler.removesuffix("+fixed"))
            with pythonpath(patched_path if patched else None):
                server.start()
            servers[handler] = server
        names = [(h, route, n) for h in servers for route in ("/raw/echo", "/echo")
                 for n in (1, many)]
        rates = {key: [] for key in names}
        for r in range(rounds):
            for key in random.Random(r).sample(names, len(names)):
                handler, route, n = key
                url = servers[handler].ws_url + route + "?client=bench"
                rates[key].append(echo_rates(url, n, seconds, max_trips))
    finally:
        for server in servers.values():
            server.stop()
    table = []
    for (handler, route, n), values in rates.items():
        ref = rates[("gevent-websocket+fixed", route, n)]
        ratios = sorted(v / b for v, b in zip(values, ref, strict=True))
        table.append({"handler": handler, "route": route, "clients": n,
                      "rates": [round(v) for v in values],
                      "ratio_vs_patched": [round(x, 3) for x in ratios],
                      "ratio_median": round(ratios[len(ratios) // 2], 3)})
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handler", action="append", choices=HANDLERS,
                        help="repeatable; default: all three")
    parser.add_argument("--patched-path", help="patched gevent-websocket for the reference rows")
    parser.add_argument("--agent", choices=("off", "on", "both"), default="both")
    parser.add_argument("--skip-cells", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--max-trips", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--out", default="results/handlers-probe.json")
    parser.add_argument("--logs", default="results/handlers-probe-logs")
    args = parser.parse_args(argv)
    handlers = args.handler or list(HANDLERS)
    agents = {"off": (False,), "on": (True,), "both": BOOLS}[args.agent]
    doc = {"python": sys.executable, "cells": [], "throughput": None}
    if not args.skip_cells:
        arms = [(h, False) for h in handlers]
        if args.patched_path:
            arms.insert(0, ("gevent-websocket", True))
        for handler, patched in arms:
            for agent in agents:
                row = []
                for rum in BOOLS:
                    for hello_goodbyer in BOOLS:
                        for streaming in BOOLS:
                            with pythonpath(args.patched_path if patched else None):
                                rec = run_cell(sys.executable, handler, agent, rum,
                                               hello_goodbyer, streaming, args.logs, patched)
                            doc["cells"].append(rec)
                            row.append(rec)
                print_row(handler + ("+fixed" if patched else ""), agent, row)
    if not args.skip_throughput:
        if not args.patched_path:
            parser.error("throughput compares with patched gevent-websocket: pass "
                         "--patched-path (or --skip-throughput)")
        doc["throughput"] = throughput(sys.executable, args.patched_path,
                                       [h for h in handlers if h != "gevent-websocket"],
                                       args.rounds, args.seconds, args.max_trips, args.clients,
                                       args.logs)
        for line in doc["throughput"]:
            print(f"echo {line['handler']:24} {line['route']:10} x{line['clients']:<3} "
                  f"{line['rates']} /s  ratio vs patched {line['ratio_median']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"written: {args.out}")
    return 0


def print_row(handler, agent, row):
    def mark(rec):
        verdict = "".join(sorted(set(rec["verdicts"].values())))
        closed = "c" if all(n == 1 for n in rec["iterable_close_calls"].values()) else ""
        frames = rec["close_frames"]
        valid = "v" if all(f and f.get("valid") for f in frames.values()) else ""
        return verdict + closed + valid

    print(f"{handler:24} agent {'on ' if agent else 'off'}  "
          + "  ".join(f"{mark(r):5}" for r in row))
    for rec in row:
        frames = {c: (f or {}).get("code") for c, f in rec["close_frames"].items()}
        print(f"    {rec['cell']['rum']:d}{rec['cell']['hello_goodbyer']:d}"
              f"{rec['cell']['streaming']:d} verdicts={rec['verdicts']} "
              f"close()={rec['iterable_close_calls']} close_codes={frames} "
              f"controls_failed={rec['controls_failed']}")


if __name__ == "__main__":
    sys.exit(main())
