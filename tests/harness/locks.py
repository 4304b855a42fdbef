"""Locks on this checkout's shared files (.cache/, app/node_modules), held across the
sessions nox runs side by side (`nox -j`), so one of them builds a shared file and the
others wait for it instead of building it again or reading it half-written."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator

import nox

from .paths import CACHE

LOCKS = CACHE / "locks"
LOCK_TIMEOUT = 900.0  # s a session waits for another's build of a shared file (bound)
POLL = 0.1  # s between tries: flock has no timeout of its own


@contextlib.contextmanager
def exclusive(session: nox.Session, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lock ``name`` for the block; the session fails if it waits ``timeout``."""
    path = LOCKS / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    session.error(
                        f"{path} still locked after {timeout:.0f} s (bound): another "
                        "nox session is stuck building it; stop it, or delete .cache/"
                    )
                time.sleep(POLL)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
