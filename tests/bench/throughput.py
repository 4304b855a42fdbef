"""``python -m tests.bench.throughput``: websocket echo round trips per second.

Today's stack, one server per configuration, all started up front and
checked (their readiness line names the gevent-websocket build and whether
the agent is active):

- ``flask``: the Flask websocket view ``/echo`` (app/web.py), vanilla and
  patched gevent-websocket, agent off and on (developer mode, RUM on);
- ``raw``: ``/raw/echo``, the same loop as a bare WSGI app (no Flask), agent
  off: the ceiling.

The patched server is the same interpreter and packages as the vanilla one,
with the patched wheel first on PYTHONPATH (``--patched-path``, a
``pip install --target`` of the wheel), so the build is the only difference.

The client (websocket-client, in this process) opens one connection per
measurement, warms it up, then sends a 32-byte text message and waits for
its echo, again and again, for ``--seconds`` (and at most ``--max-trips``
round trips); the rate is round trips / elapsed.  ``--rounds`` rounds, each
measuring every configuration once, in an order shuffled every round (a
fixed seed per round, so runs are comparable), so neither drift in the
machine's load nor what ran just before favours one configuration.  Ratios are taken within a
round, then summarised (median, min, max over rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import websocket

from tests.harness.cells import build_name, is_patched
from tests.harness.server import Server

PAYLOAD = "x" * 32
CONNECT_TIMEOUT = 5.0  # s for the handshake and for any single echo (bound)
WARMUP_TRIPS = 200
TARGET_PATCHED_OVER_VANILLA = 0.97
CONFIGS = {  # name: (route, patched, agent)
    "flask vanilla agent-off": ("/echo", False, False),
    "flask patched agent-off": ("/echo", True, False),
    "flask vanilla agent-on": ("/echo", False, True),
    "flask patched agent-on": ("/echo", True, True),
    "raw vanilla agent-off": ("/raw/echo", False, False),
    "raw patched agent-off": ("/raw/echo", True, False),
}
RATIOS = {  # name: (numerator, denominator, target or None)
    "patched/vanilla, agent off": (
        "flask patched agent-off",
        "flask vanilla agent-off",
        TARGET_PATCHED_OVER_VANILLA,
    ),
    "patched/vanilla, agent on": (
        "flask patched agent-on",
        "flask vanilla agent-on",
        TARGET_PATCHED_OVER_VANILLA,
    ),
    "agent on/off, vanilla": ("flask vanilla agent-on", "flask vanilla agent-off", None),
    "agent on/off, patched": ("flask patched agent-on", "flask patched agent-off", None),
    "flask/raw, vanilla": ("flask vanilla agent-off", "raw vanilla agent-off", None),
    "flask/raw, patched": ("flask patched agent-off", "raw patched agent-off", None),
}


@contextlib.contextmanager
def pythonpath(path: str | Path | None) -> Iterator[None]:
    """Server.start() copies os.environ: put ``path`` first on the child's sys.path."""
    saved = os.environ.get("PYTHONPATH")
    if path:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(path), saved) if p)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def round_trips(url: str, seconds: float, max_trips: int) -> tuple[int, float]:
    """(round trips, elapsed s) over one connection, after a warm-up."""
    ws = websocket.create_connection(url, timeout=CONNECT_TIMEOUT)
    try:
        for _ in range(WARMUP_TRIPS):
            ws.send(PAYLOAD)
            assert ws.recv() == PAYLOAD
        send, recv, clock = ws.send, ws.recv, time.perf_counter
        trips = 0
        started = clock()
        deadline = started + seconds
        while trips < max_trips:
            send(PAYLOAD)
            if recv() != PAYLOAD:
                raise AssertionError(f"{url}: the echo differs from what was sent")
            trips += 1
            if not trips % 64 and clock() >= deadline:
                break
        elapsed = clock() - started
    finally:
        ws.close()
    return trips, elapsed


def start_servers(python, patched_path, log_dir):
    servers = {}
    wanted = {}
    try:
        for name, (_route, patched, agent) in CONFIGS.items():
            key = (patched, agent)
            if key not in wanted:
                build = build_name(patched)
                server = wanted[key] = Server(
                    python,
                    agent=agent,
                    rum=agent,
                    log_dir=log_dir,
                    name=f"throughput-{build}-agent-{'on' if agent else 'off'}",
                )
                with pythonpath(patched_path if patched else None):
                    server.start()
                reported = server.versions["gevent-websocket"] or ""
                if is_patched(reported) != patched or server.ready.get("agent_active") != agent:
                    raise AssertionError(
                        server.explain(
                            f"expected patched={patched}, agent={agent}; the server reports "
                            f"gevent-websocket {reported!r}, agent_active "
                            f"{server.ready.get('agent_active')!r}"
                        )
                    )
            servers[name] = wanted[key]
    except BaseException:
        for server in wanted.values():
            server.stop()
        raise
    return servers, list(wanted.values())


def summary(values):
    values = sorted(values)
    return {
        "median": round(statistics.median(values), 4),
        "min": round(values[0], 4),
        "max": round(values[-1], 4),
        "n": len(values),
    }


def measure(python, patched_path, rounds, seconds, max_trips, log_dir=None):
    servers, processes = start_servers(python, patched_path, log_dir)
    rates = {name: [] for name in CONFIGS}
    try:
        names = list(CONFIGS)
        for r in range(rounds):
            order = random.Random(r).sample(names, len(names))
            for name in order:
                route = CONFIGS[name][0]
                trips, elapsed = round_trips(
                    servers[name].ws_url + route + "?client=bench", seconds, max_trips
                )
                rates[name].append(trips / elapsed)
        versions = {name: servers[name].versions for name in CONFIGS}
    finally:
        for server in processes:
            server.stop()
    ratios = {}
    for label, (num, den, target) in RATIOS.items():
        per_round = [a / b for a, b in zip(rates[num], rates[den], strict=True)]
        ratios[label] = {
            **summary(per_round),
            "target": target,
            "pass": None if target is None else statistics.median(per_round) >= target,
        }
    return {
        "payload_bytes": len(PAYLOAD),
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "max_trips": max_trips,
        "rates": {name: {**summary(v), "unit": "round trips/s"} for name, v in rates.items()},
        "ratios": ratios,
        "versions": {
            name: {
                k: versions[name].get(k)
                for k in ("python", "gevent", "gevent-websocket", "Flask", "newrelic")
            }
            for name in CONFIGS
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.throughput")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="server interpreter (vanilla gevent-websocket and newrelic installed)",
    )
    parser.add_argument(
        "--patched-path",
        required=True,
        help="directory holding the patched gevent-websocket (pip --target)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--max-trips", type=int, default=100000)
    parser.add_argument("--logs", default=None, help="keep server logs here")
    parser.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    figures = measure(
        args.python, args.patched_path, args.rounds, args.seconds, args.max_trips, args.logs
    )
    text = json.dumps(figures, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(json.dumps({k: v["median"] for k, v in figures["ratios"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
