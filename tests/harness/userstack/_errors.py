"""How a user stack says what went wrong: one line, the cause and then the fix."""

from __future__ import annotations

import re

EXIT_BAD_INPUT = 2  # the command line's status for a StackError


class StackError(RuntimeError):
    """Bad input or an unusable stack: one line naming the cause and the fix."""


def installer_failure(output: str, what: str) -> str:
    """One line from a resolver's or installer's output: the cause, then the fix."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    built = next(
        (
            re.search(r"Failed to build `?([^`\s]+)`?", ln)
            for ln in lines
            if re.search(r"Failed to build|Failed building wheel for", ln)
        ),
        None,
    )
    if built or any("Failed building wheel for" in ln for ln in lines):
        name = (
            built.group(1)
            if built
            else next(
                ln.split("for", 1)[1].strip() for ln in lines if "Failed building wheel for" in ln
            )
        )
        errors = [ln for ln in lines if re.match(r"^\w*(Error|error)\b|^\w+Error:", ln)]
        detail = errors[-1][:200] if errors else lines[-1][:200]
        return (
            f"{what}: {name} has no wheel for this Python and its sdist does not build "
            f"here ({detail}); pin a release with a wheel for it, or choose another "
            "--python"
        )
    mismatch = _hash_mismatch(lines)
    if mismatch:
        name, computed, expected = mismatch
        return (
            f"{what}: {name} downloaded with {', '.join(computed) or '?'}, none of the "
            f"requirements file's hashes ({', '.join(expected) or '?'}); regenerate the "
            "hashes (uv pip compile --generate-hashes) or check where the requirements "
            "file came from"
        )
    conflict = [
        ln
        for ln in lines
        if "unsatisfiable" in ln
        or "No solution found" in ln
        or "ResolutionImpossible" in ln
        or "conflict" in ln.lower()
    ]
    if conflict:
        detail = " ".join(ln.removeprefix("╰─▶").strip() for ln in lines[1:4])[:400]
        return f"{what}: the pins conflict ({detail}); change one of the pins it names"
    missing = [
        ln
        for ln in lines
        if "No matching distribution" in ln
        or "Could not find a version" in ln
        or "not found in the package registry" in ln
    ]
    if missing:
        return f"{what}: {missing[0][:300]}; pin a release that exists for this Python"
    return f"{what} failed: {' | '.join(lines[-3:])[:500]}"


def _hash_mismatch(lines: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(name==version, the download's digests, the file's) from an installer's output."""
    at = {ln: i for i, ln in enumerate(lines)}
    uv = next((m for ln in lines if (m := re.search(r"Hash mismatch for `?([^`\s]+)`?", ln))), None)
    if uv:  # "Expected:", the file's digests, "Computed:", the download's
        return (
            uv[1],
            lines[at.get("Computed:", len(lines)) + 1 :],
            lines[at.get("Expected:", 0) + 1 : at.get("Computed:", 0)],
        )
    if not any("DO NOT MATCH THE HASHES" in ln for ln in lines):
        return None
    # pip: "<name==version> from <url>:", "Expected sha256 <hex>", "or sha256 <hex>", "Got <hex>"
    name = next((ln.split()[0] for ln in lines if re.match(r"^\S+==\S+ from ", ln)), "a file")
    expected = [f"sha256:{ln.split()[-1]}" for ln in lines if re.match(r"^(Expected|or) ", ln)]
    got = [f"sha256:{ln.split()[-1]}" for ln in lines if ln.startswith("Got ")]
    return name, got, expected
