"""Deploy rows against the matrix rows of the same arms: where gunicorn changes the outcome.

``differences(matrix_docs, deploy_docs)`` is pure: given the results documents
of the two session families (results/<slug>.json), it lists every cell whose
verdict, closed column or close-frame column differs, and every cell that one
side observed and the other did not.  The report (tests/harness/report.py)
shows the list beside the deploy grid; each entry is a finding to explain.

    python -m tests.harness.deploy_compare [--results results]   # prints the rows
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import median

from .cells import BOOLS, session_name, slug

COLUMNS = ("verdict", "closed", "close_frame")
AXES = ("agent", "fixed", "rum", "hello_goodbyer", "streaming")


def row(record):
    """The report's columns of one cell record: every client must agree for a yes."""
    observed = record["observed"]
    return {"verdict": record["verdict"],
            "closed": all(o["iterable_closed"] for o in observed),
            "close_frame": all(o["valid_close_frame"] for o in observed)}


def rows(docs):
    """{(agent, fixed, rum, hello_goodbyer, streaming): record} over passed or failed docs."""
    found = {}
    for doc in docs:
        for record in doc.get("cells", []):
            found[tuple(record["cell"][axis] for axis in AXES)] = record
    return found


def differences(matrix_docs, deploy_docs):
    """[{"cell": {...}, "matrix": row or None, "deploy": row or None, "columns": [...]}].

    Only cells of the arms the deploy docs cover are compared: a deploy run of
    one session is compared with the matrix session of the same arm.
    """
    matrix, deploy = rows(matrix_docs), rows(deploy_docs)
    arms = {(doc.get("agent"), doc.get("fixed")) for doc in deploy_docs}
    found = []
    for key in sorted(set(matrix) | set(deploy)):
        if key[:2] not in arms:
            continue
        left = row(matrix[key]) if key in matrix else None
        right = row(deploy[key]) if key in deploy else None
        if left is None or right is None:
            columns = ["observed"]
        else:
            columns = [c for c in COLUMNS if left[c] != right[c]]
        if columns:
            found.append({"cell": dict(zip(AXES, key, strict=True)), "matrix": left,
                          "deploy": right, "columns": columns})
    return found


def load(results_dir, kind):
    """Every results doc of one session kind present in results_dir (absent ones skipped)."""
    docs = []
    stack = {"matrix": "today", "deploy": "deploy"}[kind]
    for agent in BOOLS:
        for fixed in BOOLS:
            path = Path(results_dir) / (slug(session_name(stack, agent, fixed)) + ".json")
            if path.exists():
                docs.append(json.loads(path.read_text()))
    return docs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.harness.deploy_compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    matrix, deploy = load(args.results, "matrix"), load(args.results, "deploy")
    if not deploy:
        print(f"no deploy results in {args.results}: run `nox -t ci` or a deploy session")
        return 0
    by_key, deployed = rows(matrix), rows(deploy)
    print("agent fixed rum   hg    stream | verdict m/d | closed m/d | close-frame m/d"
          " | seconds m/d (start, exchange, stop)")
    for key in sorted(deployed):
        d = deployed[key]
        m = by_key.get(key)
        left = row(m) if m else dict.fromkeys(COLUMNS, "?")
        right = row(d)

        def phases(record):
            p = (record or {}).get("phases") or {}
            return ",".join(f"{p[k]:.2f}" for k in ("start", "exchange", "stop")) if p else "?"

        print(" ".join(f"{str(v):5}" for v in key), "|",
              f"{left['verdict']} / {right['verdict']}".ljust(11), "|",
              f"{left['closed']!s:5}/{right['closed']!s:5}", "|",
              f"{left['close_frame']!s:5}/{right['close_frame']!s:5}".ljust(15), "|",
              f"{phases(m)} / {phases(d)}")
    for label, records in (("matrix", [by_key[k] for k in deployed if k in by_key]),
                           ("deploy", list(deployed.values()))):
        print(f"{label}: median seconds a cell over {len(records)} cells: " + ", ".join(
            f"{phase} {median(r['phases'][phase] for r in records if r.get('phases')):.2f}"
            for phase in ("start", "exchange", "stop")
            if any(r.get("phases") for r in records)))
    found = differences(matrix, deploy)
    print(f"{len(deployed)} deploy cells, {len(found)} differ from the matrix rows of the "
          "same arms" + (":" if found else "."))
    for entry in found:
        print("  ", entry["cell"], entry["columns"], "matrix", entry["matrix"],
              "deploy", entry["deploy"])
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
