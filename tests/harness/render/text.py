"""Words the renderers share: how an outcome, a conclusion and the protocol counts read."""

from __future__ import annotations

from ..inputs import Data

OUTCOME_TEXT = {
    "xfailed": "defect",
    "passed": "pass",
    "failed": "FAILED",
    "xpassed": "XPASSED",
    "skipped": "skipped",
    "not run": "not run",
}


def outcome(name: str) -> str:
    return OUTCOME_TEXT.get(name, name)


def conclusion_text(c: Data | None) -> str:
    if c is None:
        return "not evaluated (no cells)"
    if c["confirmed"]:
        return f"confirmed on all {c['cells']} cells"
    return f"refuted by {c['contradicting']} of {c['cells']} cells"


def protocol_counts(data: Data) -> str:
    return (
        f"patched: {data['patched_passed']}/{data['checks']} checks pass; vanilla: "
        f"{data['vanilla_defects']} defects observed, {data['vanilla_passed']} checks pass"
    )


# -- the which-handler table (tests/harness/handlers.py) ------------------------------
HANDLER_COLUMNS = (
    "handler",
    "cells passed",
    "close() called",
    "layers finished",
    "Autobahn non-OK outside compression",
    "protocol checks passed",
    "throughput ratio vs patched",
    "Python 2.7",
    "latest release",
)
Figure = tuple[str, str, str | None]  # (column, text, link or None)


def handler_figures(row: Data, layers_absent: str) -> list[Figure]:
    """[(column, text, link or None)] of one row of the which-handler table: each figure
    beside the file or page that shows it."""
    files = row["sessions"]
    results = files[0]["link"] if files else None
    out: list[Figure] = [("handler", row["label"], None)]
    if row["status"] == "observed":
        model = "" if row["matches_model"] else " (DISAGREES with the model)"
        out.append(("cells passed", f"{row['passed']}/{row['cells']}{model}", results))
        out.append(("close() called", f"{row['closed']}/{row['cells']}", results))
        layers = row.get("layers")
        out.append(
            (
                "layers finished",
                f"{layers['finished']}/{layers['of']}" if layers else layers_absent,
                (row.get("layers_link") or results) if layers else None,
            )
        )
    else:
        out += [(c, "not run", None) for c in HANDLER_COLUMNS[1:4]]
    ab = row["autobahn"]
    out.append(
        (
            "Autobahn non-OK outside compression",
            f"{ab['non_ok']} of {ab['cases']}"
            + (f" ({len(ab['excluded'])} excluded)" if ab["excluded"] else "")
            if ab
            else "not run",
            ab["link"] if ab else None,
        )
    )
    pr = row["protocol"]
    out.append(
        (
            "protocol checks passed",
            f"{pr['passed']}/{pr['checks']}" if pr else "not run",
            next((f["link"] for f in files if "agent=False" in f["session"]), results)
            if pr
            else None,
        )
    )
    tp = row["throughput"]
    out.append(
        (
            "throughput ratio vs patched",
            (
                "1 (reference)"
                if tp["reference"]
                else f"{tp['ratio']:.2f} ({tp['min']:.2f}-{tp['max']:.2f})"
            )
            if tp
            else "not measured (nox -s bench)",
            "bench.md" if tp and not tp["reference"] else None,
        )
    )
    py27 = row["python27"]
    # pyproject.toml's facts: the evidence is the sentence beside them, and the registry
    out.append(
        (
            "Python 2.7",
            ("yes" if py27 else ("no" if py27 is False else "?"))
            + (f": {row['python27_evidence']}" if row.get("python27_evidence") else ""),
            None,
        )
    )
    # the registry's, as pyproject.toml records it (the page links nothing on the network)
    out.append(("latest release", f"{row['latest']} ({row['released']})", None))
    return out
