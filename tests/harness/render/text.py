"""Words the renderers share: how an outcome, a conclusion and the protocol counts read."""

from __future__ import annotations

OUTCOME_TEXT = {"xfailed": "defect", "passed": "pass", "failed": "FAILED", "xpassed": "XPASSED",
                "skipped": "skipped", "not run": "not run"}


def outcome(name):
    return OUTCOME_TEXT.get(name, name)


def conclusion_text(c):
    if c is None:
        return "not evaluated (no cells)"
    if c["confirmed"]:
        return f"confirmed on all {c['cells']} cells"
    return f"refuted by {c['contradicting']} of {c['cells']} cells"


def protocol_counts(data):
    return (f"patched: {data['patched_passed']}/{data['checks']} checks pass; vanilla: "
            f"{data['vanilla_defects']} defects observed, {data['vanilla_passed']} checks pass")
