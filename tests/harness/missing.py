"""What a check needs and this machine lacks: skipped on a developer's machine, a failure
under CI (CI set, as GitHub Actions and .ci/run do), so CI never passes by skipping."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn


def under_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(what: str, needs: str, how: str) -> str:
    """The one message shape: what is missing, what needs it, how to get it."""
    return f"{what}: {needs} needs it; {how}"


def skip_or_fail(
    reason: str, skip: Callable[[str], NoReturn], fail: Callable[[str], NoReturn]
) -> NoReturn:
    """``fail(reason)`` under CI, else ``skip(reason)``: pytest's, or a nox session's."""
    __tracebackhide__ = True  # pytest reports the caller's line, not this one
    (fail if under_ci() else skip)(reason)
