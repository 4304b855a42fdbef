"""Find a CPython X.Y: 2.7 for the seed (2016) stack, any X.Y for a user's stack.

Looked for, in order: ``$PYTHONXY`` (``PYTHON27``, ``PYTHON310``), ``pythonX.Y`` on
PATH, then pyenv's ``versions/X.Y*/bin/pythonX.Y``.  A candidate counts only once
it has run and said it is CPython X.Y.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# Valid on Python 2 and 3 alike (print would differ).
_PROBE = (
    "import platform, sys; "
    "sys.stdout.write('%s %d.%d\\n' % ((platform.python_implementation(),) + sys.version_info[:2]))"
)
_TIMEOUT = 30
_LATEST_PATCH = {"2.7": "2.7.18"}  # what to suggest to pyenv when X.Y has a final release


class MissingPython(RuntimeError):
    """No usable CPython X.Y: ``what`` says where we looked, ``how`` what to do."""

    def __init__(self, what: str, how: str) -> None:
        super().__init__(f"{what}; {how}")
        self.what, self.how = what, how


def env_var(version: str) -> str:
    """PYTHON27 for 2.7, PYTHON310 for 3.10."""
    return "PYTHON" + version.replace(".", "")


def how_to_get(version: str) -> str:
    return (
        f"install one with `pyenv install {_LATEST_PATCH.get(version, version)}` or set "
        f"{env_var(version)}=/path/to/python{version}"
    )


HOW_TO_GET_ONE = how_to_get("2.7")


def _problem(python: str, version: str) -> str | None:
    """None if ``python`` runs and is CPython ``version``, else why not."""
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"does not run ({exc})"
    out = proc.stdout.strip()
    if proc.returncode != 0 or out != f"CPython {version}":
        return f"is not CPython {version} (said {out or proc.stderr.strip()[-200:]!r})"
    return None


def _pyenv_root() -> Path:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            proc = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=_TIMEOUT, check=False
            )
            if proc.returncode == 0 and proc.stdout.strip():
                return Path(proc.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return Path.home() / ".pyenv"


def _version_key(path: Path) -> tuple[int, ...]:
    # versions/2.7.18 must beat versions/2.7.9; a plain string sort gets that wrong.
    name = path.parent.parent.name
    return tuple(int(n) for n in re.findall(r"\d+", name))


def find_python(version: str) -> str:
    """Path of a working CPython ``version`` ("X.Y"), or raise :class:`MissingPython`."""
    if not re.fullmatch(r"\d+\.\d+", version):
        raise MissingPython(f"Python {version!r} is not X.Y", "name one like 3.8 or 2.7")
    var = env_var(version)
    explicit = os.environ.get(var)
    if explicit:
        problem = _problem(explicit, version)
        if problem is None:
            return explicit
        # An explicit setting that is wrong should not be papered over by a fallback.
        raise MissingPython(f"{var}={explicit} {problem}", how_to_get(version))

    looked: list[str] = [f"${var} (unset)"]
    on_path = shutil.which(f"python{version}")
    looked.append(f"python{version} on PATH ({on_path or 'none'})")
    candidates = [on_path] if on_path else []

    root = _pyenv_root()
    looked.append(f"{root}/versions/{version}*/bin/python{version}")
    # versions/3.1* would also match 3.10: keep only X.Y or X.Y.<patch> directories.
    found = [
        p
        for p in root.glob(f"versions/{version}*/bin/python{version}")
        if re.fullmatch(re.escape(version) + r"(\.\d+.*)?", p.parent.parent.name)
    ]
    candidates += [str(p) for p in sorted(found, key=_version_key, reverse=True)]

    for candidate in candidates:
        problem = _problem(candidate, version)
        if problem is None:
            return candidate
        looked.append(f"{candidate} {problem}")
    raise MissingPython(
        f"no CPython {version} found (looked in: {'; '.join(looked)})", how_to_get(version)
    )


def find_python27() -> str:
    """Path of a working CPython 2.7 interpreter, or raise :class:`MissingPython`."""
    return find_python("2.7")


def installed_versions() -> list[str]:
    """Every X.Y pyenv holds here, newest first (the candidates a stack may choose from)."""
    names = {
        m.group(1)
        for p in (_pyenv_root() / "versions").glob("*")
        if (m := re.fullmatch(r"(\d+\.\d+)\.\d+", p.name))
    }
    return sorted(names, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
