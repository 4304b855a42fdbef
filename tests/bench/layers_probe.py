"""``python -m tests.bench.layers_probe``: does each request layer finish its work? (issue 19)

For each layer (and the layer-off control) x arm given, starts ``python -m app
--layer NAME`` as a real process with HelloGoodbyer off and on, serves the
page once (the control that the layer is active: a plain request must finish
it) and runs both clients on /view and /streaming.  Per connection it records:

* exchange: the seed's verdict (tests/harness/criteria.py);
* layer_finished: a ``layer_finished`` event for the connection's request id
  within FINISH_BOUND seconds after the client exited ("late" if it came only
  when the server stopped, "-" if never);
* close(): how many times the server called close() on the outermost iterable;
* tcp: who closed TCP after the closing handshake, and how long after it.

    python -m tests.bench.layers_probe --stack today \\
        --arm vanilla=.cache/layer-envs/today-vanilla/bin/python \\
        --arm fixed=.cache/layer-envs/today-fixed/bin/python [--layer NAME ...] [--json FILE]

Every wait is bounded (the harness's Server and clients, and FINISH_BOUND).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from tests.harness import clients
from tests.harness.criteria import evaluate
from tests.harness.server import Server, ServerError

LAYERS = ("elastic-apm", "opentelemetry", "opentelemetry-wsgi", "sentry", "werkzeug-debugger",
          "ddtrace")
ROUTES = ("/view", "/streaming")
FINISH_BOUND = 2.0  # s after the client exited for the layer's end-of-request work


def layer_server(python, layer, hello_goodbyer, log_dir, name):
    server = Server(python, hello_goodbyer=hello_goodbyer, log_dir=log_dir, name=name)
    if layer:
        server.argv += ["--layer", layer]
    return server


def _finished(server, rid, bound):
    """The layer_finished event for ``rid`` within ``bound`` seconds, or None."""
    try:
        return server.wait_for(lambda e: e["event"] == "layer_finished" and e.get("rid") == rid,
                               bound, f"layer_finished for request {rid}")
    except ServerError:
        return None


def _rid(server, query):
    """The request id of the connection that sent ``query`` (the events are read on a thread)."""
    try:
        return server.wait_for(lambda e: e["event"] == "request" and e.get("query") == query,
                               FINISH_BOUND, f"the request event of {query}")["rid"]
    except ServerError:
        return None


def probe_server(python, layer, arm, hello_goodbyer, log_dir):
    """Every connection of one server: a list of result dicts."""
    name = f"{layer or 'none'}-{arm}-{'hg' if hello_goodbyer else 'plain'}"
    rows, pending = [], []
    with layer_server(python, layer, hello_goodbyer, log_dir, name) as server:
        ready = server.ready
        control = {"layer": layer, "arm": arm, "hello_goodbyer": hello_goodbyer,
                   "ready_after": round(server.ready_after, 3),
                   "layer_active": ready.get("layer_active"), "versions": ready.get("versions")}
        if layer:
            server.get("/?client=page")
            rid = _rid(server, "client=page")
            control["page_finished"] = bool(rid and _finished(server, rid, FINISH_BOUND))
        for route in ROUTES:
            for client in clients.CLIENTS:
                query = f"client={client}&n={len(rows)}"
                started = time.monotonic()
                transcript = clients.run(client, f"{server.ws_url}{route}?{query}")
                client_s = time.monotonic() - started
                rid = _rid(server, query)
                done = _finished(server, rid, FINISH_BOUND) if layer and rid else None
                cell = SimpleNamespace(streaming=route == "/streaming",
                                       hello_goodbyer=hello_goodbyer)
                mine = [e for e in server.events if rid is not None and e.get("rid") == rid]
                observation = evaluate(cell, transcript, mine)
                tcp = next((e for e in transcript.events if e["event"] == "tcp_closed"), None)
                row = {"layer": layer, "arm": arm, "hello_goodbyer": hello_goodbyer,
                       "route": route, "client": client, "rid": rid,
                       "exchange": observation.verdict,
                       "layer_finished": ("n/a" if not layer else "yes" if done else "-"),
                       "finished_what": done and done.get("what"),
                       "close_calls": observation.evidence["close"]["iterable_close_calls"],
                       "tcp_by": tcp and tcp.get("by"),
                       "tcp_after": tcp and tcp.get("after_handshake"),
                       "client_s": round(client_s, 3),
                       "cell_s": round(time.monotonic() - started, 3)}
                rows.append(row)
                if layer and not done:
                    pending.append(row)
    # What the layer did only when the server stopped (SIGTERM, shutdown hooks).
    for row in pending:
        late = [e for e in server.events if e["event"] == "layer_finished"
                and e.get("rid") == row["rid"]]
        if late:
            row["layer_finished"] = "late"
            row["finished_what"] = late[0].get("what")
    unattributed = [e for e in server.events
                    if e["event"] == "layer_finished" and e.get("rid") is None]
    control["unattributed_layer_finished"] = len(unattributed)
    control["outbound"] = [e for e in server.events if e["event"] == "outbound"]
    return control, rows


def table(rows):
    header = ("layer", "arm", "hg", "route", "client", "exch", "finished", "close()", "tcp by",
              "tcp after ms", "cell s")
    lines = [header]
    for r in rows:
        after = "-" if r["tcp_after"] is None else f"{r['tcp_after'] * 1000:.2f}"
        lines.append((r["layer"] or "(none)", r["arm"], "hg" if r["hello_goodbyer"] else "-",
                      r["route"], r["client"], r["exchange"], r["layer_finished"],
                      str(r["close_calls"]), str(r["tcp_by"]), after, f"{r['cell_s']:.2f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True))
                     for line in lines)


def grid(rows):
    """One line per layer and arm, one column per (HelloGoodbyer, route), both clients in each:
    exchange, layer_finished (F yes, . no, L late, - no layer), close() calls, who closed TCP
    (S<ms after the handshake> the server, C the client)."""
    columns = [(hg, route) for hg in (False, True) for route in ROUTES]
    names = ["hg " * hg + route.strip("/") for hg, route in columns]
    lines = [f"{'layer':19} {'arm':8} | " + " | ".join(f"{n:22}" for n in names)]
    keys = dict.fromkeys((r["layer"], r["arm"]) for r in rows)
    marks = {"yes": "F", "-": ".", "late": "L", "n/a": "-"}
    for layer, arm in keys:
        cells = []
        for hg, route in columns:
            found = [r for r in rows if (r["layer"], r["arm"], r["hello_goodbyer"], r["route"])
                     == (layer, arm, hg, route)]
            tcp = ",".join(f"S{r['tcp_after'] * 1000:.1f}" if r["tcp_by"] == "server"
                           and r["tcp_after"] is not None else "C" if r["tcp_by"] == "client"
                           else "?" for r in found)
            exchange = "".join(r["exchange"] for r in found)
            finished = "".join(marks[r["layer_finished"]] for r in found)
            closes = "".join(str(r["close_calls"]) for r in found)
            cells.append(f"{exchange:2} {finished:2} {closes:2} {tcp:13}")
        lines.append(f"{layer or '(none)':19} {arm:8} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.bench.layers_probe",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="today", help="label for the output only")
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=PYTHON",
                        help="an arm and its server interpreter (repeatable)")
    parser.add_argument("--layer", action="append", choices=LAYERS,
                        help="layers to probe (default: all); the layer-off control always runs")
    parser.add_argument("--json", type=Path, help="write controls and rows here")
    parser.add_argument("--logs", type=Path, default=Path(".cache/layers-probe-logs"))
    args = parser.parse_args(argv)
    arms = []
    for spec in args.arm:
        if "=" not in spec:
            parser.error(f"--arm {spec!r}: expected NAME=PYTHON, e.g. fixed=.venv/bin/python")
        arms.append(tuple(spec.split("=", 1)))
    controls, rows = [], []
    for layer in (None, *(args.layer or LAYERS)):
        for arm, python in arms:
            for hello_goodbyer in (False, True):
                control, found = probe_server(python, layer, arm, hello_goodbyer,
                                              args.logs / args.stack)
                controls.append(control)
                rows.extend(found)
                print(f"# {args.stack} {layer} {arm} hg={hello_goodbyer}: "
                      f"ready {control['ready_after']} s, active {control.get('layer_active')}, "
                      f"page finished {control.get('page_finished')}, "
                      f"unattributed {control['unattributed_layer_finished']}, "
                      f"outbound {control['outbound']}", file=sys.stderr, flush=True)
    print(f"## stack {args.stack}")
    print(table(rows))
    print(grid(rows))
    layered = [r["cell_s"] for r in rows if r["layer"]]
    plain = [r["cell_s"] for r in rows if not r["layer"]]
    print(f"median cell seconds: with a layer {statistics.median(layered):.3f}, "
          f"without {statistics.median(plain):.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"stack": args.stack, "controls": controls,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
