"""Find a CPython 2.7 for the seed (2016) stack.

Looked for, in order: ``$PYTHON27``, ``python2.7`` on PATH, then pyenv's
``versions/2.7*/bin/python2.7``.  A candidate counts only once it has run and
said it is CPython 2.7.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

HOW_TO_GET_ONE = "install one with `pyenv install 2.7.18` or set PYTHON27=/path/to/python2.7"
# Valid on Python 2 and 3 alike (print would differ).
_PROBE = (
    "import platform, sys; "
    "sys.stdout.write('%s %d.%d\\n' % ((platform.python_implementation(),) + sys.version_info[:2]))"
)
_EXPECTED = "CPython 2.7"
_TIMEOUT = 30


class MissingPython(RuntimeError):
    """No usable CPython 2.7; the message says where we looked and what to do."""


def _problem(python: str) -> str | None:
    """None if ``python`` runs and is CPython 2.7, else why not."""
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
    if proc.returncode != 0 or out != _EXPECTED:
        return f"is not CPython 2.7 (said {out or proc.stderr.strip()[-200:]!r})"
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


def find_python27() -> str:
    """Path of a working CPython 2.7 interpreter, or raise :class:`MissingPython`."""
    explicit = os.environ.get("PYTHON27")
    if explicit:
        problem = _problem(explicit)
        if problem is None:
            return explicit
        # An explicit setting that is wrong should not be papered over by a fallback.
        raise MissingPython(f"PYTHON27={explicit} {problem}; {HOW_TO_GET_ONE}")

    looked: list[str] = ["$PYTHON27 (unset)"]
    on_path = shutil.which("python2.7")
    looked.append(f"python2.7 on PATH ({on_path or 'none'})")
    candidates = [on_path] if on_path else []

    root = _pyenv_root()
    looked.append(f"{root}/versions/2.7*/bin/python2.7")
    found = sorted(root.glob("versions/2.7*/bin/python2.7"), key=_version_key, reverse=True)
    candidates += [str(p) for p in found]

    for candidate in candidates:
        problem = _problem(candidate)
        if problem is None:
            return candidate
        looked.append(f"{candidate} {problem}")
    raise MissingPython(f"no CPython 2.7 found (looked in: {'; '.join(looked)}); {HOW_TO_GET_ONE}")
