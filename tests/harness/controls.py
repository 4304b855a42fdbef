"""The positive controls: what a cell's server really runs, checked against what the cell
claims (its build, handler, agent, layer and the releases or pins put in place).

A cell whose controls fail answers no question: tests/harness/cellrun.py records them
beside the observation and fails the cell before comparing it with the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from tests.harness.cells import (
    DEFAULT_HANDLER,
    HANDLERS,
    NO_LAYER,
    STACKS,
    Cell,
    build_version,
    layer_install,
    layer_pins,
)
from tests.harness.clients import Transcript
from tests.harness.server import Server

# The process ended only when the harness stopped it: one that crashed or aborted mid-cell
# (gevent-ws can: tests/matrix/test_reader_race.py) served no whole cell.
SERVER_LIVED = "server lived until stopped"


def imported_from_env(server: Server, module: str) -> bool:
    """The server imported `module` from its own environment: the env it runs in, or a
    directory its harness put first on PYTHONPATH (a history session's release).

    The handler's module is where the readiness line's ``handler`` says (app/handlers.py
    describe()); other modules, and servers that do not describe it, in ``module_files``.
    """
    ready = server.ready or {}
    handler = ready.get("handler") or {}
    path = (
        handler.get("module_file")
        if handler.get("module") == module
        else (ready.get("module_files") or {}).get(module)
    )
    roots = [
        Path(server.python).parent.parent,  # <env>/bin/python
        *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p),
    ]
    return path is not None and any(
        Path(path).resolve().is_relative_to(root.resolve()) for root in roots
    )


def served_by(server: Server) -> bool:
    """The process that announced readiness is the one that served: the server
    itself (python -m app) or, under gunicorn, its worker, not the master."""
    pid = (server.ready or {}).get("pid")
    started = server.proc.pid if server.proc is not None else None
    requests = [e for e in server.events if e["event"] == "request"]
    worker = pid != started if server.launcher == "gunicorn" else pid == started
    return worker and bool(requests) and all(e.get("pid") == pid for e in requests)


def handler_named(cell: Cell, server: Server, pins: Mapping[str, str] | None = None) -> bool:
    """The handler in use is the one the cell names: its name and pinned version (a user
    stack's pin of it, else pyproject.toml's) in the readiness line, and the class of the
    websocket every upgrade gave a view."""
    described = (server.ready or {}).get("handler") or {}
    pinned = HANDLERS[cell.handler]
    version = (pins or {}).get(cell.handler) or pinned["version"]
    accepted = [e for e in server.events if e["event"] == "websocket_accepted"]
    return (
        described.get("name") == cell.handler
        and described.get("version") == version
        and bool(accepted)
        and all(e.get("websocket_class") == pinned["websocket_class"] for e in accepted)
    )


def handler_controls(
    cell: Cell,
    server: Server,
    pins: Mapping[str, str] | None = None,
    releases: Mapping[str, str] | None = None,
) -> dict[str, bool]:
    """Which websocket handler served: gevent-websocket's build (a history session's
    release, a user stack's pin, else the stack's), or another handler with
    gevent-websocket not even installed beside it (at a user stack's pin of it)."""
    if cell.handler == DEFAULT_HANDLER:
        release = (
            (releases or {}).get("gevent-websocket")
            or (pins or {}).get("gevent-websocket")
            or STACKS[cell.stack]["gevent-websocket"]["version"]
        )
        return {
            "gevent-websocket build": (server.versions.get("gevent-websocket") or "")
            == build_version(release, cell.fixed),
            "gevent-websocket imported from the server's env": imported_from_env(
                server, "geventwebsocket"
            ),
        }
    module = ((server.ready or {}).get("handler") or {}).get("module") or cell.handler
    return {
        "gevent-websocket not installed": server.versions.get("gevent-websocket") is None,
        f"{module} imported from the server's env": imported_from_env(server, module),
        f"the handler in use is {cell.handler}": handler_named(cell, server, pins),
    }


def positive_controls(
    cell: Cell,
    server: Server,
    page: str,
    releases: Mapping[str, str] | None = None,
    transcripts: Iterable[Transcript] = (),
    pins: Mapping[str, str] | None = None,
) -> dict[str, bool]:
    """What this server really runs, checked against what the cell claims.

    ``releases`` ({name: version}, pytest --release) are the releases a history
    session put in place of the stack's pins: the server must report those.
    ``pins`` (pytest --pin) are a user stack's own (tests/harness/userstack.py),
    a stack pyproject.toml does not declare: the server must report each.
    Every client must get its websocket (a handler that does not speak RFC 6455,
    e.g. gevent-websocket 0.2, answers no question about lazy layers).
    """
    versions = server.versions
    ready = server.ready or {}
    releases = releases or {}
    releases_reported = {
        f"{name} release": versions.get(name) == version
        for name, version in releases.items()
        if name != "gevent-websocket"
    }
    pins_reported = {
        f"{name} pin": versions.get(name) == version
        for name, version in (pins or {}).items()
        # a handler's pin is the readiness line's handler (handler_controls)
        if name != "gevent-websocket" and name not in HANDLERS
    }
    return {
        **releases_reported,
        **pins_reported,
        "hello_goodbyer": ("Goodbye from the page!" in page) == cell.hello_goodbyer,
        "rum_script": ("NREUM" in page) == (cell.agent and cell.rum),
        **handler_controls(cell, server, pins, releases),
        f"served by the {server.launcher} process": served_by(server),
        SERVER_LIVED: server.died is None,
        **entry_control(cell, server),
        "agent loaded": ready.get("agent_loaded") == cell.agent,
        "agent active": ready.get("agent_active") == cell.agent,
        "websocket handshake": not [
            e
            for t in transcripts
            for e in t.events
            if e["event"] == "error" and e.get("stage") == "connect"
        ],
        "no outbound connection": not [
            e
            for e in server.events
            if e["event"] == "outbound" and e.get("kind") != "udp_route_lookup"
        ],
        **layer_controls(cell, server, pins or {}),
    }


def layer_controls(
    cell: Cell, server: Server, user_pins: Mapping[str, str] | None = None
) -> dict[str, bool]:
    """The layer the cell claims is the one set up in this server, pinned (in
    [tool.layers.<name>], or a user stack's own pin of its distribution), its hook
    installed, and doing its work: it finished the page's plain GET."""
    ready: dict[str, Any] = server.ready or {}
    if cell.layer == NO_LAYER:
        return {"no layer": not ready.get("layer")}
    active = ready.get("layer_active") or {}
    version = str(active.get("version"))
    if user_pins:
        distribution = Requirement(layer_install(cell.layer)[0]).name
        pinned = user_pins.get(distribution) == version
    else:
        pins, _ = layer_pins(cell.layer, cell.stack)
        pinned = (
            any(pin.endswith(f"=={version}") for pin in pins or ())
            or version in (server.versions.get("Werkzeug"),)
            and not pins
        )
    page = next(
        (e["rid"] for e in server.events if e["event"] == "request" and e.get("path") == "/"), None
    )
    return {
        f"layer {cell.layer} set up": ready.get("layer") == cell.layer
        and active.get("hook_installed") is True,
        f"layer {cell.layer} pinned ({version})": pinned,
        f"layer {cell.layer} finished the page's request": any(
            e["event"] == "layer_finished"
            and e.get("layer") == cell.layer
            and page is not None
            and e.get("rid") == page
            for e in server.events
        ),
    }


def page_request(server: Server) -> int | None:
    """The request id of the page's plain GET."""
    return next(
        (e["rid"] for e in server.events if e["event"] == "request" and e.get("path") == "/"), None
    )


def entry_control(cell: Cell, server: Server) -> dict[str, bool]:
    """The cell's tracked layer (the agent, or its request layer) is watched from outside
    its outermost wrapper in this server: it was entered for the page's plain GET.  Without
    that watch every websocket would read as "not started" (tests/harness/criteria.py)."""
    layer, page = cell.tracked_layer, page_request(server)
    if layer is None:
        return {}
    return {
        f"layer {layer} entered for the page's request": any(
            e["event"] == "layer_entered" and e.get("layer") == layer and e.get("rid") == page
            for e in server.events
            if page is not None
        )
    }
