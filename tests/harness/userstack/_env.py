"""The server environment of a user's stack, built atomically.

One directory per (Python, resolved pins, gevent-websocket release):
``<work>/envs/<name>-py<X.Y>-<key>/`` holding ``env/`` (the virtualenv, gevent-websocket
vanilla, or another handler of [tool.handlers] without it), ``patched/`` (the patched
build, put first on the server's PYTHONPATH for the patched arm, as history does with a
release) and ``stack.json`` (what is installed).
It is built under a temporary name and renamed into place only once complete, so a
failed or interrupted build never looks like an environment; a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import builds
from ..cells import STACKS
from ..server import Server, ServerError
from ._errors import StackError, installer_failure
from ._request import GWS, LAST_GWS
from ._resolve import Plan, uv, uv_pip

INSTALL_TIMEOUT = 900  # s: an sdist (gevent, greenlet) may compile
VENV_TIMEOUT = 120
SMOKE_BOUND = 10.0  # s for a layer to finish the page's request once it is served
REVISION = "2"  # bump when the layout of an environment changes
# Valid on 2.7 and 3.x: every installed distribution, as name==version lines.
FREEZE = (
    "import sys\n"
    "try:\n"
    "    from importlib.metadata import distributions\n"
    "    ds = [(d.metadata['Name'], d.version) for d in distributions()]\n"
    "except ImportError:\n"
    "    import pkg_resources\n"
    "    ds = [(d.project_name, d.version) for d in pkg_resources.working_set]\n"
    "sys.stdout.write(''.join('%s==%s\\n' % d for d in ds if d[0]))\n"
)
# What the server reports (app/__main__.py versions()): canonical name -> its own
# spelling there, which a cell's --pin must match.
REPORTED = {
    "gevent": "gevent",
    "greenlet": "greenlet",
    "flask": "Flask",
    "werkzeug": "Werkzeug",
    "newrelic": "newrelic",
    GWS: GWS,
}


@dataclass
class Env:
    path: Path
    python: Path
    patched: Path | None
    versions: dict[str, str | None]  # canonical name -> version, of what the server reports
    installed: dict[str, str]  # canonical name -> version, everything
    reused: bool
    verified: list[str]  # name==version installed from files the file's hashes match
    unverified: list[str]  # name==version: why its hash was not checked
    handler: str = GWS  # the websocket handler that serves the stack (Plan.handler)

    def hash_lines(self) -> list[str]:
        """What was checked against the file's hashes when the environment was built."""
        if not (self.verified or self.unverified):
            return []
        return [
            f"hashes: {len(self.verified)} pins checked against the file's sha256 at "
            f"install{' (when this environment was built)' * self.reused}"
            + (": " + ", ".join(self.verified) if self.verified else ""),
            *(f"hash not checked: {line}" for line in self.unverified),
        ]

    def smoke(self) -> None:
        """The stack's server starts and serves its page, or a StackError naming why."""
        failure = self.start_failure()
        if failure:
            raise StackError(
                f"the server of this stack {failure}; change the pin it names, or report "
                "it if the app itself needs to adapt to this release"
            )

    def start_failure(self, layer: str | None = None, agent: bool = False) -> str | None:
        """Why the server (with ``layer`` set up, or the agent started, as its cells run
        it) does not start and serve its page with the layer finishing that request (the
        agent active), or None if it does."""
        logs = self.path / "smoke" / (layer or ("agent" if agent else "stack"))
        try:
            with Server(
                str(self.python),
                name="smoke",
                log_dir=logs,
                agent=agent,
                layer=layer,
                monkey_patch=layer is not None,
                handler=None if self.handler == GWS else self.handler,
            ) as server:
                status, _ = server.get("/")
                if agent and not (server.ready or {}).get("agent_active"):
                    return f"starts, but the agent never becomes active; see {logs}"
                if layer is not None:
                    server.wait_for(
                        lambda e: e["event"] == "layer_finished",
                        SMOKE_BOUND,
                        f"{layer}'s layer_finished for the page's request",
                    )
        except ServerError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            last = next(
                (
                    ln
                    for ln in reversed(lines)
                    if re.match(r"^\w+(\.\w+)*(Error|Exception|Exit)\b", ln)
                ),
                lines[0] if lines else "?",
            )
            return f"does not start ({last[:300]}; logs in {logs})"
        if status != 200:
            return f"answers GET / with {status}; see {logs}"
        return None


def _run(
    cmd: Sequence[str | Path],
    what: str,
    timeout: float = INSTALL_TIMEOUT,
    env: Mapping[str, str | None] | None = None,
) -> str:
    # None unsets a variable, as in nox's env=, which COMPILE is also written for
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=environ,
        )
    except subprocess.TimeoutExpired:
        raise StackError(
            f"{what} took more than {timeout} s (bound); retry, or pick releases "
            "with wheels for this Python"
        ) from None
    if proc.returncode != 0:
        raise StackError(installer_failure(proc.stdout + proc.stderr, what))
    return proc.stdout


def _gws_wheels(plan: Plan, build_python: str | Path) -> tuple[Path, Path | None]:
    """The verified gevent-websocket wheels of the plan's release: (vanilla, patched|None)."""
    version = plan.gws
    pinned = {s[GWS]["version"]: s[GWS]["sha256"] for s in STACKS.values()}
    sdists = [f for f in plan.gws_files if f["packagetype"] == "sdist"]
    # The project's own pin where there is one; else the registry's digest, over HTTPS.
    sha = pinned.get(version) or (sdists[0]["digests"]["sha256"] if len(sdists) == 1 else None)
    if sha is None:
        raise StackError(
            f"{GWS}=={version} has {len(sdists)} sdists on the registry; pin a "
            f"release with one (e.g. {GWS}=={LAST_GWS})"
        )
    theirs = plan.hashes.get(GWS)
    if theirs and f"sha256:{sha}" not in theirs:
        raise StackError(
            f"{GWS}=={version}: the sdist the cells build has sha256 {sha}, "
            f"which none of the file's hashes ({', '.join(theirs)}) is; regenerate "
            "them (uv pip compile --generate-hashes) or check where the file "
            "came from"
        )
    try:
        sdist = builds.fetch_verified_sdist(
            GWS, version, sha, download=builds.registry_download(plan.gws_files)
        )
        vanilla = builds.build_release_wheel(GWS, version, sdist, sha, str(build_python))
        series = builds.PATCHES / version
        patched = (
            builds.build_release_wheel(
                GWS, version, sdist, sha, str(build_python), patches=builds.series(series)
            )
            if series.is_dir()
            else None
        )
    except builds.BuildError as exc:
        raise StackError(f"{GWS} {version}: {' '.join(str(exc).split())[:400]}") from None
    return vanilla, patched


def key_of(plan: Plan) -> str:
    text = "\0".join(
        [
            REVISION,
            plan.python_version,
            os.path.realpath(plan.python),
            plan.pins.get(GWS, plan.handler),
            *sorted(plan.requirements),
            "--",
            *sorted(plan.constraints),
            "--",
            *(f"{n} {' '.join(h)}" for n, h in sorted(plan.hashes.items())),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _load(path: Path, reused: bool) -> Env:
    data = json.loads((path / "stack.json").read_text())
    patched = path / "patched"
    return Env(
        path=path,
        python=path / "env" / "bin" / "python",
        patched=patched if patched.is_dir() else None,
        versions=data["versions"],
        installed=data["installed"],
        reused=reused,
        verified=data["verified"],
        unverified=data["unverified"],
        handler=data.get("handler", GWS),
    )


def build(plan: Plan, work: Path) -> Env:
    envs = Path(work) / "envs"
    final = envs / f"{plan.request.name}-py{plan.python_version}-{key_of(plan)}"
    if (final / "stack.json").is_file():
        return _load(final, True)
    envs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=envs, prefix=f".tmp-{final.name}-"))
    try:
        _build_into(plan, tmp)
        if final.exists() and not (final / "stack.json").is_file():
            shutil.rmtree(final)  # an incomplete leftover (not ours to reuse)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "stack.json").is_file():
                raise
            # a concurrent run of the same stack finished first: use its environment
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(final, False)


def _requirements_file(path: Path, pins: list[str], hashes: Mapping[str, Sequence[str]]) -> Path:
    """``name==version --hash=...`` lines: the installer checks each file it installs (a
    cached one too) against the pin's hashes."""
    path.write_text(
        "".join(
            " ".join([pin, *(f"--hash={h}" for h in hashes.get(pin.partition("==")[0], ()))]) + "\n"
            for pin in pins
        )
    )
    return path


def _build_into(plan: Plan, tmp: Path) -> None:
    venv = tmp / "env"
    python = venv / "bin" / "python"
    py2 = plan.python_version == "2.7"
    if py2:  # uv cannot make 2.7 environments; virtualenv<20.22 (the builder group) can
        _run(
            [
                sys.executable,
                "-m",
                "virtualenv",
                "--quiet",
                "--no-download",
                "-p",
                plan.python,
                venv,
            ],
            "creating the 2.7 virtualenv",
            VENV_TIMEOUT,
        )
    else:
        # < 3.8 has no importlib.metadata: app/__main__.py reads versions with pkg_resources.
        seed = ["--seed"] if tuple(map(int, plan.python_version.split("."))) < (3, 8) else []
        _run(
            [uv(), "venv", "--quiet", *seed, "--python", plan.python, venv],
            f"creating the Python {plan.python_version} virtualenv",
            VENV_TIMEOUT,
        )
    # gevent-websocket is pure Python: on 3.x the harness's interpreter builds the same
    # py3 wheel (and shares today's cache); 2.7 builds its own py2 wheel.  Another
    # handler is a pin like the others (no builds of its own), gevent-websocket left out.
    vanilla, patched = (
        _gws_wheels(plan, python if py2 else sys.executable)
        if plan.handler == GWS
        else (None, None)
    )
    wheels = [vanilla] if vanilla else []
    if py2:
        pip: list[str | Path] = [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
        ]
        hashed = [f"{n}=={plan.pins[n]}" for n in plan.hashes if n != GWS]
        if hashed:
            # pip checks hashes only when every requirement has them: the pins that have
            # go in first, alone; the install below finds them satisfied and keeps them.
            _run(
                [
                    *pip,
                    "--no-deps",
                    "--require-hashes",
                    "-r",
                    _requirements_file(tmp / "hashed.txt", hashed, plan.hashes),
                ],
                "installing the hash-pinned pins with pip",
            )
        constraints = tmp / "constraints.txt"
        constraints.write_text("".join(c + "\n" for c in plan.constraints))
        _run(
            [*pip, "-c", constraints, *plan.requirements, *wheels], "installing the stack with pip"
        )
        if patched:
            _run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--target",
                    tmp / "patched",
                    patched,
                ],
                "installing the patched build",
            )
    else:
        # The era's dates again: an sdist among the pins builds with the era's tools.
        # uv's bytecode compiler needs 3.7's py_compile; 3.6 compiles with its own.
        compile_env = builds.COMPILE if plan.python_version != "3.6" else {}
        # In a file, so that each pin carries the user's --hash options: uv checks the
        # files it installs against them (a cached one too).
        requirements = _requirements_file(
            tmp / "requirements.txt", plan.requirements, {**plan.handler_hashes, **plan.hashes}
        )
        _run(
            uv_pip("install", python, "--no-deps", *plan.uv_dates, "-r", requirements, *wheels),
            "installing the stack",
            env=compile_env,
        )
        if patched:
            _run(
                uv_pip("install", python, "--no-deps", "--target", tmp / "patched", patched),
                "installing the patched build",
                env=compile_env,
            )
        if not compile_env:
            # As pip does: a file that does not compile (py2-only test code in a sdist)
            # stays uncompiled; the exit status says only that one did not.
            subprocess.run(
                [str(python), "-m", "compileall", "-q", str(venv / "lib"), str(tmp / "patched")],
                capture_output=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
    installed = {}
    for line in _run([python, "-c", FREEZE], "listing the environment", VENV_TIMEOUT).split():
        name, _, version = line.partition("==")
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    versions = {n: installed.get(n) for n in REPORTED}
    # Reached only once every install succeeded: uv (3.x) checked each pin's hashes, and
    # _gws_wheels gevent-websocket's sdist, or raised.
    verified = [f"{n}=={installed.get(n, plan.pins.get(n))}" for n in sorted(plan.hashes)]
    listed = {line.partition("==")[0] for line in plan.unverified}
    unverified = plan.unverified + [
        f"{n}=={v}: installed without the file's hash (pip's choice on Python 2.7, or the "
        "virtualenv's own seed)"
        for n, v in sorted(installed.items())
        if any(plan.request.hashes.get(n, {}).values()) and n not in plan.hashes and n not in listed
    ]
    (tmp / "stack.json").write_text(
        json.dumps(
            {
                "python": plan.python_version,
                "interpreter": plan.python,
                "versions": versions,
                "installed": installed,
                "requirements": plan.requirements,
                "constraints": plan.constraints,
                "patched": bool(patched),
                "handler": plan.handler,
                "verified": verified,
                "unverified": unverified,
            },
            indent=1,
        )
        + "\n"
    )
