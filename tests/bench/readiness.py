"""``python -m tests.bench.readiness``: process start to readiness line, in seconds.

Starts the real server N times per configuration (agent off, agent on) with
the interpreter given (default: this one, e.g. a nox session's) and reports
median, p90 and max of spawn -> {"event": "listening"}.  Targets:
median <= 0.5 s without the agent, <= 1 s with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from tests.harness.server import Server

TARGETS = {"agent off": 0.5, "agent on": 1.0}


def measure(python, agent, runs):
    times = []
    for _ in range(runs):
        with Server(python, agent=agent, rum=agent, name="readiness") as server:
            times.append(server.ready_after)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.readiness")
    parser.add_argument("--python", default=sys.executable, help="server interpreter")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    report = {}
    for label, agent in (("agent off", False), ("agent on", True)):
        times = sorted(measure(args.python, agent, args.runs))
        median = statistics.median(times)
        report[label] = {
            "runs": len(times),
            "median": round(median, 3),
            "p90": round(times[int(0.9 * (len(times) - 1))], 3),
            "max": round(times[-1], 3),
            "target": TARGETS[label],
            "pass": median <= TARGETS[label],
        }
    print(json.dumps(report, indent=1))
    return 0 if all(r["pass"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
