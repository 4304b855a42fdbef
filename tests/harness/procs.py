"""Live processes by their /proc stat: a session's members, a process's children."""

from __future__ import annotations

import os


def _procs(field: int, value: int) -> list[int]:
    """Live (non-zombie) processes whose /proc stat `field` (after the name) is `value`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[field]) == value:
            found.append(int(entry))
    return found


def procs_in_session(sid: int) -> list[int]:
    return _procs(3, sid)


def children(pid: int) -> list[int]:
    return _procs(1, pid)
