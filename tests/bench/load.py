"""``python -m tests.bench.load``: N concurrent websocket clients against one patched server.

Run it with a nox session's interpreter, which has the server's packages and
websocket-client (the agent-on arm needs newrelic, i.e. an ``agent=True`` env):

    .nox/matrix-agent-true-fixed-true/bin/python -m tests.bench.load    # 200, agent on and off
    .nox/matrix-agent-false-fixed-true/bin/python -m tests.bench.load --agent off

Every client is a real websocket-client connection on its own thread.  All of
them connect at once (a barrier), then each completes the ``/streaming``
exchange: the view's message and the iterator's message, each answered, then
the server's close frame.  Nothing may be lost or duplicated, checked on both
sides: each client's transcript, and the server's events for that client's
connection (matched by ``?client=load-<i>``).  Reports p50/p99 of the exchange
time (connect to close frame) and the server's peak RSS (GET /_stats).  Every
wait is bounded and named.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter

from tests.harness.criteria import ITERATOR_MESSAGE, VIEW_MESSAGE
from tests.harness.server import Server

CLIENTS = 200
CLIENT_TIMEOUT = 30.0  # s any single client wait (connect, each frame) may take
BARRIER_TIMEOUT = 30.0  # s for every client thread to be ready to connect
RUN_TIMEOUT = 120.0  # s for every client thread to finish
EVENTS_TIMEOUT = 30.0  # s for the server to log every connection's end
EXPECTED = [VIEW_MESSAGE, ITERATOR_MESSAGE]


def name(index):
    return f"load-{index}"


def answer(index, message):
    """Unique per client and message, so a duplicate or a cross-talk shows."""
    return f"{name(index)} re: {message}"


def one_client(url, index, barrier, timeout):
    """One real websocket client: answer every message, stop at the close frame."""
    import websocket

    from app.client import converse

    record = {
        "index": index,
        "received": [],
        "sent": [],
        "close": None,
        "error": None,
        "exchange_s": None,
    }
    ws = None
    try:
        barrier.wait(BARRIER_TIMEOUT)
        started = time.perf_counter()
        ws = websocket.create_connection(f"{url}?client={name(index)}", timeout=timeout)
        for event, fields in converse(ws, lambda data: answer(index, data)):
            if event == "closed":
                record["close"] = fields
                record["exchange_s"] = time.perf_counter() - started
            else:
                record[event].append(fields["data"])
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if ws is not None:
            ws.shutdown()
    return record


def run_clients(ws_url, clients, timeout=CLIENT_TIMEOUT):
    barrier = threading.Barrier(clients)
    records = [None] * clients

    def work(i):
        records[i] = one_client(ws_url, i, barrier, timeout)

    threads = [
        threading.Thread(target=work, args=(i,), daemon=True, name=name(i)) for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - started
    for i, record in enumerate(records):
        if record is None:
            records[i] = {
                "index": i,
                "received": [],
                "sent": [],
                "close": None,
                "exchange_s": None,
                "error": f"client thread still running after {RUN_TIMEOUT:.0f} s (bound)",
            }
    return records, wall


def wait_for_server(server, clients, expect_closed):
    """Until the server has logged every client's end (or EVENTS_TIMEOUT passes)."""
    wanted = "iterable_closed" if expect_closed else "iterator_received"
    queries = {f"client={name(i)}" for i in range(clients)}
    deadline = time.monotonic() + EVENTS_TIMEOUT
    while True:
        events = list(server.events)
        rids = {e["rid"] for e in events if e["event"] == "request" and e.get("query") in queries}
        done = {e["rid"] for e in events if e["event"] == wanted and e.get("rid") in rids}
        if len(done) >= clients or time.monotonic() >= deadline:
            return events, len(done) >= clients


def check(records, events, expect_closed=True):
    """Lost and duplicated messages, on the client side and on the server side."""
    problems = {"lost": [], "duplicated": [], "errors": []}
    by_query = {}
    for event in events:
        if event["event"] == "request":
            by_query.setdefault(event.get("query", ""), []).append(event["rid"])
    by_rid = {}
    for event in events:
        if "rid" in event:
            by_rid.setdefault(event["rid"], []).append(event)
    answers_seen = Counter(
        e.get("data") for e in events if e["event"] in ("view_received", "iterator_received")
    )

    def note(kind, index, what):
        problems[kind].append(f"{name(index)}: {what}")

    for record in records:
        i = record["index"]
        if record["error"]:
            problems["errors"].append(f"{name(i)}: {record['error']}")
        # The client side: each message exactly once, in order, each answered once.
        got = Counter(record["received"])
        for message in EXPECTED:
            if got[message] == 0:
                note("lost", i, f"client never received {message!r}")
            elif got[message] > 1:
                note("duplicated", i, f"client received {message!r} {got[message]} times")
        for extra in set(got) - set(EXPECTED):
            note("duplicated", i, f"client received an unexpected {extra!r}")
        if record["close"] is None:
            note("lost", i, "client saw no close frame")
        # The server side, for this client's connection only.
        rids = by_query.get(f"client={name(i)}", [])
        if len(rids) != 1:
            kind = "lost" if not rids else "duplicated"
            note(kind, i, f"{len(rids)} request events on the server")
            continue
        mine = by_rid.get(rids[0], [])
        count = Counter(e["event"] for e in mine)
        for message, event in (
            (VIEW_MESSAGE, "view_received"),
            (ITERATOR_MESSAGE, "iterator_received"),
        ):
            want = answer(i, message)
            logged = [e.get("data") for e in mine if e["event"] == event]
            if want not in logged:
                note("lost", i, f"server never logged the answer {want!r} ({event})")
            if len(logged) > 1 or answers_seen[want] > 1:
                note(
                    "duplicated",
                    i,
                    f"server logged {event} {len(logged)} times "
                    f"(answer seen {answers_seen[want]} times in all)",
                )
            if count[event + "_missing"]:
                note("lost", i, f"server logged {event}_missing")
        # PEP 3333 close(), exactly once (the patched handler).  Not response_closed:
        # with direct_passthrough Werkzeug returns the generator itself, so the
        # Response's call_on_close callbacks never run on /streaming.
        if expect_closed and count["iterable_closed"] != 1:
            kind = "lost" if count["iterable_closed"] < 1 else "duplicated"
            note(
                kind,
                i,
                f"server logged iterable_closed {count['iterable_closed']} times, expected 1",
            )
    return problems


def listen_overflows():
    """The host's count of accept-queue overflows (TcpExt ListenOverflows), or None.

    Host-wide, so other work on the machine counts too.  An overflow drops the
    handshake's last ACK and the client retransmits after ~1 s: it shows as a
    p99 just above one second.
    """
    try:
        with open("/proc/net/netstat") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return None


def quantile(values, q):
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(python, agent, clients, log_dir=None, hello_goodbyer=False, require_fixed=True):
    """One server, `clients` concurrent exchanges on /streaming: the figures and the problems."""
    with Server(
        python,
        agent=agent,
        rum=agent,
        hello_goodbyer=hello_goodbyer,
        log_dir=log_dir,
        name=f"load-agent-{'on' if agent else 'off'}",
    ) as server:
        build = server.versions.get("gevent-websocket") or ""
        fixed = build.endswith("+fixed")
        if require_fixed and not fixed:
            raise SystemExit(
                f"error: the server runs gevent-websocket {build}, not a patched "
                "(+fixed) build: use a fixed=True nox environment's interpreter"
            )
        before = server.stats()
        overflows = listen_overflows()
        records, wall = run_clients(server.ws_url + "/streaming", clients)
        if overflows is not None:
            overflows = listen_overflows() - overflows
        events, complete = wait_for_server(server, clients, expect_closed=fixed)
        after = server.stats()
        problems = check(records, events, expect_closed=fixed)
        if not complete:
            problems["lost"].append(
                f"the server logged fewer than {clients} connection ends "
                f"within {EVENTS_TIMEOUT:.0f} s (bound)"
            )
    times = [r["exchange_s"] for r in records if r["exchange_s"] is not None]
    return {
        "clients": clients,
        "agent": agent,
        "route": "/streaming",
        "versions": server.versions,
        "completed": len(times),
        "wall_s": round(wall, 3),
        "p50_ms": round(1000 * quantile(times, 0.50), 1) if times else None,
        "p99_ms": round(1000 * quantile(times, 0.99), 1) if times else None,
        "max_ms": round(1000 * max(times), 1) if times else None,
        "server_before": before,
        "server_after": after,
        "host_listen_overflows": overflows,
        "peak_rss_mib": round(after["peak_rss_kib"] / 1024, 1) if after["peak_rss_kib"] else None,
        "lost": len(problems["lost"]),
        "duplicated": len(problems["duplicated"]),
        "errors": len(problems["errors"]),
        "problems": problems,
    }


def summary(result):
    return (
        f"agent {'on ' if result['agent'] else 'off'}  clients {result['clients']}  "
        f"completed {result['completed']}  lost {result['lost']}  "
        f"duplicated {result['duplicated']}  errors {result['errors']}  "
        f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  max {result['max_ms']} ms  "
        f"wall {result['wall_s']} s  server peak RSS {result['peak_rss_mib']} MiB  "
        f"listen overflows {result['host_listen_overflows']}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--agent", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="interpreter that runs `python -m app` (default: this one)",
    )
    parser.add_argument("--hello-goodbyer", action="store_true")
    parser.add_argument("--json", help="also write the full results here")
    args = parser.parse_args(argv)
    arms = {"on": [True], "off": [False], "both": [False, True]}[args.agent]
    results = []
    for agent in arms:
        result = measure(
            args.server_python, agent, args.clients, hello_goodbyer=args.hello_goodbyer
        )
        results.append(result)
        print(summary(result), flush=True)
        for kind in ("lost", "duplicated", "errors"):
            for line in result["problems"][kind][:10]:
                print(f"  {kind}: {line}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1, sort_keys=True)
    bad = sum(r["lost"] + r["duplicated"] + r["errors"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
