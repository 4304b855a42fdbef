"""What a nox session builds before it runs anything: the harness, the node client, the
server under test (in the session's own venv on Python 3, in a CPython 2.7 virtualenv
beside it for the 2.7 stacks), wstest, history's base env; where results go; and the one
rule for a missing CPython 2.7.  noxfile.py is the table of sessions that call these.

Installs go through session.install / session.run_install, so `nox -R` skips them.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import records
from tests.harness.builds import COMPILE
from tests.harness.cells import HANDLERS, HISTORY, STACKS, TOOL, build_name, layer_pins, slug
from tests.harness.locks import exclusive
from tests.harness.missing import missing, skip_or_fail, under_ci
from tests.harness.paths import RESULTS, ROOT
from tests.harness.py27 import pip27_install, py27_env, py27_wheelhouse
from tests.harness.pythons import MissingPython, find_python, find_python27
from tests.harness.records import SessionResults

PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
NODE_LOCK = ROOT / "app" / "package-lock.json"
NODE_STAMP = ROOT / "app" / "node_modules" / ".installed-lock-sha256"


def results_file(name: str, suffix: str = ".json") -> Path:
    return RESULTS / f"{slug(name)}{suffix}"


def write_skipped(path: Path, session: str, reason: str) -> None:
    """The results file of a session that did not run, so the report says why."""
    records.write(path, SessionResults(session=session, status="skipped", reason=reason))


def require_python27(session: nox.Session, results: Path | None = None) -> str:
    """A CPython 2.7, else the session ends: skipped with the reason (recorded in
    ``results`` if given) on a developer's machine, failed under CI (CI set)."""
    try:
        return find_python27()
    except MissingPython as exc:
        reason = missing(exc.what, f"the session {session.name}", exc.how)
    if results is not None and not under_ci():
        write_skipped(results, session.name, reason)
    skip_or_fail(reason, session.skip, session.error)


def needs_python27(stack: str) -> bool:
    return str(STACKS[stack]["python"]) == "2.7"


def install_groups(
    session: nox.Session, *groups: str, env: dict[str, str | None] | None = None
) -> None:
    """The pinned [dependency-groups] of pyproject.toml, into the session's venv."""
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups), env=env)


def install_harness(session: nox.Session) -> None:
    # Only what runs in every cell is worth compiling: compiling the builder's
    # tools too cost uv ~1.2 s of every cold session (pip compiles anyway).
    install_groups(session, "harness", env=COMPILE)
    install_groups(session, "builder")


def install_node_client(session: nox.Session) -> None:
    """npm ci into app/node_modules, unless it already holds this package-lock.json.

    The directory is shared by every session: reinstalling it for each cost
    0.5-0.8 s a session, and wiped it under any session still running node.
    """
    digest = hashlib.sha256(NODE_LOCK.read_bytes()).hexdigest()

    def current() -> bool:
        return NODE_STAMP.is_file() and NODE_STAMP.read_text() == digest

    if current():
        return
    with exclusive(session, "node_modules"):
        if current():  # a parallel session made it
            return
        if session.run_install(
            "npm",
            "ci",
            "--prefix",
            "app",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            external=True,
        ):
            NODE_STAMP.write_text(digest)


def gevent_websocket_wheel(
    session: nox.Session, stack: str, fixed: bool, python: Path | None = None
) -> str | None:
    """Build (or take from cache) the verified wheel; None when installs are skipped."""
    build = build_name(fixed)
    args = ["python", "-m", "tests.harness.builds", "--stack", stack, "--build", build]
    if python:
        args += ["--python", str(python)]
    with exclusive(session, f"wheel-{stack}-{build}"):  # one build, not one per parallel session
        output = session.run_install(*args, silent=True)
    return output.strip().splitlines()[-1] if isinstance(output, str) and output else None


def server_requirements(stack: str, agent: bool) -> list[str]:
    pins = STACKS[stack]
    return [*pins["server"], *(pins["agent"] if agent else [])]


def install_server(session: nox.Session, stack: str, agent: bool, fixed: bool) -> Path:
    """The environment of the server under test; returns its interpreter.

    The wheel is force-reinstalled: a changed patch rebuilds it under the same
    version (0.10.1+fixed), which a reused environment would otherwise keep.
    """
    requirements = server_requirements(stack, agent)
    if needs_python27(stack):
        python = py27_env(session, require_python27(session))
        return install_py27_server(session, python, stack, fixed, requirements)
    wheel = gevent_websocket_wheel(session, stack, fixed)
    if wheel:
        session.install(*requirements, env=COMPILE)
        session.install("--no-deps", "--force-reinstall", wheel, env=COMPILE)
    return Path(session.virtualenv.location) / "bin" / "python"


def handler_requirements(handler: str) -> list[str]:
    """[tool.handlers.<handler>]'s wheels as hash-checked requirement lines: the handler
    first, then what it brings, each ``name==version --hash=sha256:...``."""
    pins = HANDLERS[handler]
    return [
        f"{p['name']}=={p['version']} --hash=sha256:{p['sha256']}"
        for p in ({"name": handler, **pins}, *pins.get("requires", []))
    ]


def install_handler_server(session: nox.Session, handler: str, agent: bool) -> Path:
    """Today's server without gevent-websocket, and ``handler`` with exactly its pins.

    --require-hashes: every wheel is the one whose sha256 pyproject.toml names;
    --no-deps: what a handler brings is pinned there too, nothing else comes in.
    gevent-websocket stays out, so a server that still used it would fail to start.
    """
    session.install(*server_requirements("today", agent), env=COMPILE)
    lines = Path(session.virtualenv.location) / f"{handler}-requirements.txt"
    lines.write_text("\n".join(handler_requirements(handler)) + "\n")
    session.install("--require-hashes", "--no-deps", "-r", str(lines), env=COMPILE)
    return Path(session.virtualenv.location) / "bin" / "python"


def install_py27_server(
    session: nox.Session, python: Path, stack: str, fixed: bool, requirements: list[str]
) -> Path:
    """The server into the 2.7 env ``python``, from the stack's wheelhouse."""
    wheel = gevent_websocket_wheel(session, stack, fixed, python=python)
    if wheel:
        house = py27_wheelhouse(session, python, stack, server_requirements(stack, True))
        pip27_install(session, python, house, "--force-reinstall", *requirements, wheel)
    return python


def install_layer(session: nox.Session, stack: str, layer: str, python: Path) -> None:
    """A request layer's pins ([tool.layers.<layer>].<stack>) into the server env ``python``.

    --no-deps: the pins are the layer's whole set, nothing unpinned comes in (a pin
    missing from it fails the server's start, naming the module).
    """
    pins, reason = layer_pins(layer, stack)
    if pins is None:
        session.error(f"layer {layer} cannot run on the {stack} stack: {reason}")
    if not pins:  # the layer is in the stack already (Werkzeug's debugger)
        return
    if needs_python27(stack):
        house = py27_wheelhouse(session, python, f"layer-{layer}", pins, "--no-deps")
        pip27_install(session, python, house, "--no-deps", *pins)
    else:
        session.install("--no-deps", *pins, env=COMPILE)


def install_layers(session: nox.Session, layers: list[str]) -> Path:
    """Today's pins of every layer in ``layers`` into the session's server env at once (a
    handler session's: each pytest run then sets up one of them); its interpreter.

    The layers share an env only where their pins agree with each other and with the
    server's: a name pinned twice at two versions ends the session, naming both.
    """
    pins: dict[str, tuple[str, str]] = {}  # name: (version, whose pin)
    owners = [
        ("the server", server_requirements("today", False)),
        *((f"[tool.layers.{n}]", layer_pins(n, "today")[0] or []) for n in layers),
    ]
    for owner, requirements in owners:
        for line in requirements:
            req = Requirement(line)
            name, version = canonicalize_name(req.name), str(req.specifier)
            if name in pins and pins[name][0] != version:
                session.error(
                    f"{req.name}{version} of {owner} conflicts with {req.name}"
                    f"{pins[name][0]} of {pins[name][1]}: these layers cannot share "
                    "one env; run them in separate sessions"
                )
            pins.setdefault(name, (version, owner))
    wanted = [p for n in layers for p in layer_pins(n, "today")[0] or []]
    if wanted:
        session.install("--no-deps", *dict.fromkeys(wanted), env=COMPILE)
    return Path(session.virtualenv.location) / "bin" / "python"


def conformance_server(
    session: nox.Session, target: str, stack: str, fixed: bool, handler: str | None = None
) -> Path:
    """The server env of one conformance target, beside the session's; its interpreter.

    ``handler``: one of [tool.handlers], installed as install_handler_server() does,
    instead of gevent-websocket."""
    where = Path(session.virtualenv.location) / "targets" / target
    requirements = server_requirements(stack, False)
    if needs_python27(stack):
        python = py27_env(session, require_python27(session), where)
        return install_py27_server(session, python, stack, fixed, requirements)
    python = where / "bin" / "python"
    session.run_install(
        "uv",
        "venv",
        "--quiet",
        "--allow-existing",
        "--python",
        sys.executable,
        str(where),
        external=True,
    )
    install = ["uv", "pip", "install", "--quiet", "--python", str(python)]
    if handler:
        lines = where / f"{handler}-requirements.txt"
        lines.write_text("\n".join(handler_requirements(handler)) + "\n")
        session.run_install(*install, *requirements, env=COMPILE, external=True)
        session.run_install(
            *install, "--require-hashes", "--no-deps", "-r", str(lines), env=COMPILE, external=True
        )
        return python
    wheel = gevent_websocket_wheel(session, stack, fixed)
    if wheel:
        session.run_install(*install, *requirements, env=COMPILE, external=True)
        session.run_install(*install, "--no-deps", "--reinstall", wheel, env=COMPILE, external=True)
    return python


def install_wstest(session: nox.Session, where: Path) -> Path:
    """wstest in a CPython 2.7 virtualenv at ``where``: exactly the pinned packages.

    --no-deps: the pins are the whole environment (autobahntestsuite's sdist
    declares no dependencies, and nothing unpinned may come in).  wsaccel,
    ujson and Twisted compile once, into the wheelhouse.
    """
    pins = list(TOOL["conformance"]["wstest"])
    python = py27_env(session, require_python27(session), where)
    house = py27_wheelhouse(session, python, "wstest", pins, "--no-deps")
    pip27_install(session, python, house, "--no-deps", *pins)
    return where / "bin" / "wstest"


def history_rule_env(session: nox.Session, rule: str) -> Path:
    """The server env of a rule on two packages ([tool.history.<rule>]): its Python, its
    ``base`` pins; each axis's release goes first on PYTHONPATH (tests/harness/history.py)."""
    entry = HISTORY[rule]
    try:
        python = find_python(str(entry["python"]))
    except MissingPython as exc:
        session.error(f"history({rule}): {exc}")
    where = Path(session.virtualenv.location) / f"server-py{entry['python']}"
    session.run_install(
        "uv", "venv", "--quiet", "--allow-existing", "--python", python, str(where), env=COMPILE
    )
    server = where / "bin" / "python"
    session.run_install(
        "uv", "pip", "install", "--quiet", "--python", str(server), *entry["base"], env=COMPILE
    )
    return server


def history_base_env(session: nox.Session, package: str, stack: str) -> Path:
    """The stack's 2.7 server without ``package``: each release of it is put first on the
    server's PYTHONPATH by the search (tests/harness/history.py), in a directory of its own."""
    if not needs_python27(stack):
        session.error(
            f"history({package}): stack {stack!r} runs on Python "
            f"{STACKS[stack]['python']}; only 2.7 stacks are supported so far"
        )
    python = py27_env(session, require_python27(session))
    house = py27_wheelhouse(session, python, stack, server_requirements(stack, True))
    others = [
        r
        for r in server_requirements(stack, True)
        if canonicalize_name(Requirement(r).name) != canonicalize_name(package)
    ]
    if canonicalize_name(package) != "gevent-websocket":
        wheel = gevent_websocket_wheel(session, stack, False, python=python)
        others += [wheel] if wheel else []
    pip27_install(session, python, house, *others)
    return python
