"""The conformance harness itself: reading Autobahn's report, the rule, the stall watchdog.

The reports here are written in Autobahn's own format (index.json and one
JSON per case, as wstest 25.10.1 writes them); `nox -s conformance` runs the
real wstest against the real servers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from tests.harness import conformance
from tests.harness.conformance import ConformanceError, load_index, problems, summarize

DESCRIPTIONS = {
    "1.1.1": "Send text message with payload 0.",
    "6.4.3": (
        "Same as Case 6.4.1, but we send message not in 3 frames, but in 3 chops of the "
        "same message frame.\n<br><br>MESSAGE PARTS:<br>\nPART1 = cebae1bdb9cf83cebcceb5"
    ),
    "7.3.4": "Send a close frame with close code and close reason",
    "12.1.1": (
        "Send 1000 compressed messages each of payload size 16, auto-fragment to 0 "
        "octets. Use default permessage-deflate offer."
    ),
}
NAMED = {"6.4.3": "the frame is read whole", "7.3.4": "the echo sends a repr"}


def result(behavior="OK", close="OK"):
    return {"behavior": behavior, "behaviorClose": close}


def write_report(directory, agent, cases):
    """An Autobahn report directory: index.json and each case's own JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    index = {}
    for case, res in cases.items():
        reportfile = f"{agent.replace('-', '_')}_case_{case.replace('.', '_')}.json"
        index[case] = {**res, "duration": 3, "remoteCloseCode": None, "reportfile": reportfile}
        (directory / reportfile).write_text(
            json.dumps(
                {
                    "agent": agent,
                    "id": case,
                    "description": DESCRIPTIONS.get(case, f"case {case}"),
                    **res,
                }
            )
        )
    (directory / "index.json").write_text(json.dumps({agent: index}))
    return directory


def target(stack="today", fixed=True, **cases):
    """A target as problems() takes it: every group run, the given cases overriding."""
    base = {
        "1.1.1": result(),
        "6.4.3": result(),
        "7.3.4": result(),
        "12.1.1": result("UNIMPLEMENTED"),
        "13.1.1": result("UNIMPLEMENTED"),
    }
    base.update({case.replace("_", "."): res for case, res in cases.items()})
    return {"stack": stack, "fixed": fixed, "cases": base}


# -- reading index.json ----------------------------------------------------------


def test_index_is_read_into_counts_and_the_non_ok_list(tmp_path):
    cases = {
        "1.1.1": result(),
        "6.4.3": result("NON-STRICT"),
        "7.3.4": result("OK", "UNCLEAN"),
        "12.1.1": result("UNIMPLEMENTED"),
        "2.1": result("INFORMATIONAL", "INFORMATIONAL"),
    }
    report = write_report(tmp_path / "today-vanilla", "today-vanilla", cases)
    loaded = load_index(report, "today-vanilla")
    assert {c: (r["behavior"], r["behaviorClose"]) for c, r in loaded.items()} == {
        c: (r["behavior"], r["behaviorClose"]) for c, r in cases.items()
    }
    summary = summarize(report, loaded, NAMED)
    assert summary["counts"] == {
        "behavior": {"OK": 2, "NON-STRICT": 1, "INFORMATIONAL": 1, "UNIMPLEMENTED": 1, "FAILED": 0},
        "behaviorClose": {
            "OK": 3,
            "NON-STRICT": 0,
            "INFORMATIONAL": 1,
            "UNIMPLEMENTED": 0,
            "FAILED": 0,
            "UNCLEAN": 1,
        },
    }
    assert summary["non_ok"] == [
        {
            "case": "6.4.3",
            "behavior": "NON-STRICT",
            "behaviorClose": "OK",
            "description": "Same as Case 6.4.1, but we send message not in 3 frames, but in 3 "
            "chops of the same message frame.",
            "defect": "the frame is read whole",
        },
        {
            "case": "7.3.4",
            "behavior": "OK",
            "behaviorClose": "UNCLEAN",
            "description": "Send a close frame with close code and close reason",
            "defect": "the echo sends a repr",
        },
        {
            "case": "12.1.1",
            "behavior": "UNIMPLEMENTED",
            "behaviorClose": "OK",
            "description": DESCRIPTIONS["12.1.1"],
            "defect": None,
        },
    ]


def test_case_ids_sort_as_numbers(tmp_path):
    cases = {"10.1.1": result("FAILED"), "9.2.1": result("FAILED"), "9.10.1": result("FAILED")}
    report = write_report(tmp_path / "a", "a", cases)
    non_ok = summarize(report, load_index(report, "a"), {})["non_ok"]
    assert [e["case"] for e in non_ok] == ["9.2.1", "9.10.1", "10.1.1"]


def test_index_without_the_agent_names_the_agents_it_has(tmp_path):
    report = write_report(tmp_path / "a", "seed-vanilla", {"1.1.1": result()})
    with pytest.raises(
        ConformanceError,
        match=r"no results for agent 'today-vanilla'.*"
        r"seed-vanilla",
    ):
        load_index(report, "today-vanilla")


def test_missing_or_broken_index_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ConformanceError, match="index.json"):
        load_index(tmp_path, "a")
    (tmp_path / "index.json").write_text('{"a": {"1.1.1": {"behavior": "OK"}}}')
    with pytest.raises(ConformanceError, match=r"case '1.1.1'.*missing \['behaviorClose'"):
        load_index(tmp_path, "a")


# -- the rule ------------------------------------------------------------------------


def test_clean_patched_target_and_vanilla_with_named_defects_pass():
    targets = {
        "today-patched": target(),
        "today-vanilla": target(
            fixed=False, **{"6_4_3": result("NON-STRICT"), "7_3_4": result("OK", "UNCLEAN")}
        ),
    }
    assert problems(targets, NAMED) == []


@pytest.mark.parametrize(
    "res",
    [result("NON-STRICT"), result("FAILED"), result("OK", "UNCLEAN"), result("UNIMPLEMENTED")],
)
def test_a_non_ok_case_on_the_patched_target_fails_the_rule(res):
    found = problems({"today-patched": target(**{"6_4_3": res})}, NAMED)
    assert len(found) == 1 and "today-patched: case 6.4.3" in found[0]
    assert f"seen behaviour {res['behavior']}, close {res['behaviorClose']}" in found[0]


def test_a_named_defect_does_not_excuse_the_patched_target():
    assert problems({"today-patched": target(**{"7_3_4": result("OK", "UNCLEAN")})}, NAMED)


def test_seed_patched_is_held_to_ok_too():
    """The 0.9.5 series carries the 0.10.1 fixes: a named defect excuses nothing."""
    seed = target(stack="seed", **{"6_4_3": result("NON-STRICT")})
    found = problems({"seed-patched": seed}, NAMED)
    assert len(found) == 1 and "seed-patched: case 6.4.3" in found[0]


def test_vanilla_non_ok_case_without_a_named_defect_fails_the_rule():
    found = problems({"today-vanilla": target(fixed=False, **{"1_1_1": result("FAILED")})}, NAMED)
    assert len(found) == 1 and "case 1.1.1" in found[0] and "no named defect" in found[0]


def test_compression_must_run_and_be_unimplemented():
    hidden = target()
    del hidden["cases"]["13.1.1"]
    assert any("compression cases" in p for p in problems({"today-patched": hidden}, NAMED))
    failed = target(**{"12_1_1": result("FAILED")})
    assert problems({"today-patched": failed}, NAMED) == [
        "today-patched: case 12.1.1 (permessage-deflate): expected UNIMPLEMENTED with a clean "
        "close, seen behaviour FAILED, close OK"
    ]


def test_every_arm_runs_the_same_cases():
    short = target(fixed=False)
    del short["cases"]["1.1.1"]
    found = problems({"today-patched": target(), "today-vanilla": short}, NAMED)
    assert found == ["today-vanilla: 1 case(s) not run that other targets ran: 1.1.1"]


def test_every_mapped_case_names_a_defect_of_the_protocol_table():
    """The defects are the protocol checks' own `defect=` texts, not free text."""
    from tests.harness import defects

    table = {v for k, v in vars(defects).items() if k.isupper() and isinstance(v, str)}
    assert set(conformance.defects().values()) <= table


# -- the stall watchdog ------------------------------------------------------------


HANGING_WSTEST = """\
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
for case in ("1.1.1", "1.1.2"):
    print("Running test case ID %s for agent x from peer tcp4:127.0.0.1:1" % case, flush=True)
time.sleep(60)
"""


def fake_wstest(tmp_path, body):
    """A real executable speaking wstest's progress lines (the watchdog's input)."""
    script = tmp_path / "wstest"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    return script


def test_a_hung_case_fails_naming_the_case_and_is_killed(tmp_path):
    pidfile = tmp_path / "pid"
    script = fake_wstest(tmp_path, HANGING_WSTEST.replace("sys.argv[1]", repr(str(pidfile))))
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    started = time.monotonic()
    with pytest.raises(ConformanceError, match=r"x: case 1\.1\.2 hung: no new case for 1 s"):
        conformance.run_fuzzingclient(str(script), spec, name="x", stall=1.0, bound=30.0)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)
    assert not conformance.RUNNING


def test_a_run_over_its_bound_fails_even_with_progress(tmp_path):
    body = (
        "import time\nfor i in range(100):\n"
        "    print('Running test case ID 1.1.%d for agent x' % i, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    with pytest.raises(ConformanceError, match=r"hung: the target ran over 2 s"):
        conformance.run_fuzzingclient(
            str(fake_wstest(tmp_path, body)), spec, name="x", stall=5.0, bound=2.0
        )


def test_wstest_exiting_non_zero_is_an_error(tmp_path):
    body = "print('Running test case ID 1.1.1 for agent x', flush=True)\nraise SystemExit(3)\n"
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    with pytest.raises(ConformanceError, match=r"status 3 after case 1\.1\.1"):
        conformance.run_fuzzingclient(str(fake_wstest(tmp_path, body)), spec, name="x")


# -- other handlers -------------------------------------------------------


def test_a_handlers_non_ok_cases_are_reported_not_failed_on():
    worse = target(fixed=False, **{"1_1_1": result("FAILED"), "12_1_1": result("OK", "FAILED")})
    assert problems({"today-gevent-ws": {**worse, "handler": "gevent-ws"}}, NAMED) == []


def test_an_excluded_case_counts_as_run_and_nothing_else_may_be_missing():
    short = {**target(fixed=False), "handler": "flask-sock", "excluded": {"1.1.1": "hangs"}}
    del short["cases"]["1.1.1"]
    assert problems({"today-patched": target(), "today-flask-sock": short}, NAMED) == []
    del short["cases"]["7.3.4"]
    assert problems({"today-patched": target(), "today-flask-sock": short}, NAMED) == [
        "today-flask-sock: 1 case(s) not run that other targets ran: 7.3.4"
    ]


def test_every_handler_target_and_deviation_names_a_known_target():
    from tests.harness.cells import HANDLERS

    assert {f"today-{h}" for h in HANDLERS} <= set(conformance.TARGETS)
    assert set(conformance.DEVIATIONS) <= set(conformance.TARGETS)
    for deviation in conformance.DEVIATIONS.values():
        # a case, or a section's pattern ("9.*", as wstest's exclude-cases reads it)
        assert all(
            re.fullmatch(r"\d+(\.\d+)*(\.\*)?", case) and reason
            for case, reason in deviation.get("exclude", {}).items()
        )


def test_a_hung_case_is_raised_as_casehung_naming_it(tmp_path):
    # a handler target's run resumes without the case that hung (run_target)
    pidfile = tmp_path / "pid"
    script = fake_wstest(tmp_path, HANGING_WSTEST.replace("sys.argv[1]", repr(str(pidfile))))
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    with pytest.raises(conformance.CaseHung) as hung:
        conformance.run_fuzzingclient(str(script), spec, name="x", stall=1.0, bound=30.0)
    assert hung.value.case == "1.1.2"


def test_an_excluded_pattern_stands_for_the_cases_other_targets_ran():
    full = target(fixed=True, **{"9_1_1": result("OK"), "9_2_1": result("OK")})
    short = {**target(fixed=False), "handler": "gevent-ws", "excluded": {"9.*": "timed"}}
    targets = {"today-patched": full, "today-gevent-ws": short}
    conformance.expand_excluded(targets)
    assert short["excluded"] == {"9.1.1": "timed", "9.2.1": "timed"}
    assert problems(targets, NAMED) == []
    assert full.get("excluded") == {}
