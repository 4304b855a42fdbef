"""`nox -s serve`: one server of the matrix by hand, and how to talk to it.

    nox -s serve -- [--stack today|seed] [--fixed] [--agent] [--rum] [--hello-goodbyer]
                    [--port 5000] [--host 127.0.0.1]

The stack and the build (``--fixed``: the patched gevent-websocket) choose the
environment the session installs; every other option goes to ``python -m app``
as it is.  Before the server starts, the session prints its URL and the client
commands to run in another terminal.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from tests.harness.cells import MAIN_STACKS, build_name

ROUTES = ("/view", "/streaming")


def parse(posargs: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the session's own choices, the arguments for `python -m app`)."""
    parser = argparse.ArgumentParser(
        prog="nox -s serve --", description=__doc__.split("\n")[0], add_help=True
    )
    parser.add_argument(
        "--stack",
        choices=MAIN_STACKS,
        default="today",
        help="today's stack, or the 2016 one (CPython 2.7) [today]",
    )
    parser.add_argument(
        "--fixed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the patched gevent-websocket build (else the registry's)",
    )
    parser.add_argument(
        "--agent",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start the New Relic agent (developer mode: it sends nothing)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args, rest = parser.parse_known_args(posargs)
    app_args = [
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--agent" if args.agent else "--no-agent",
        *rest,
    ]
    return args, app_args


def usage(args: argparse.Namespace, server_python: Path, client_python: Path) -> str:
    port = args.port or "PORT"
    where = f"ws://{args.host}:{port}"
    build = build_name(args.fixed)
    lines = [
        f"serving the {args.stack} stack ({build} gevent-websocket, agent "
        f"{'on' if args.agent else 'off'}) on http://{args.host}:{port}/"
        + ("" if args.port else " (PORT: the 'port' of the 'listening' line below)"),
        "  in another terminal, from this directory:",
    ]
    for route in ROUTES:
        lines.append(f"    {shlex.quote(str(client_python))} -m app.client {where}{route}")
    lines.append(f"    node app/websocket_connect.js {where}/view")
    lines.append("  Ctrl-C stops the server.")
    return "\n".join(lines)
