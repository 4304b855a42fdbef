"""The report's renderers on sample inputs: one set of data, four renderings that agree.

The samples are tests/harness/report_sample.py's: results files as the sessions
write them, plus the optional inputs of other sessions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from rich.console import Console

from tests.harness import report as report_module
from tests.harness.cells import HANDLERS, Cell
from tests.harness.controls import SERVER_LIVED
from tests.harness.defects import DEATHS, GWS_READER_ABORT
from tests.harness.paths import ROOT
from tests.harness.records import SCHEMA
from tests.harness.render import html, layout, markdown, terminal, versions
from tests.harness.report_sample import (
    FLIPPED,
    HISTORY_SAMPLE,
    write_optional,
    write_results,
)

RUN_TIMEOUT = 60  # s for one `python -m tests.harness.report` (bound)


def collect(results, out):
    """The report of ``results``, with the history write_optional wrote (if it did): the
    committed tests/data/history/ is not this module's sample."""
    return report_module.collect(results, out, out.parent / HISTORY_SAMPLE)


class Cells(HTMLParser):
    """The main grids' cells of a page: (table's data-stack, cell's classes, data-cell);
    the layers section's grids (class "layers") are not among them."""

    def __init__(self):
        super().__init__()
        self.stack, self.found, self.ids, self.layers = None, [], set(), False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "table" and "grid" in (attrs.get("class") or ""):
            self.stack = attrs.get("data-stack")
            self.layers = "layers" in (attrs.get("class") or "").split()
        if (
            tag == "td"
            and not self.layers
            and {"cell", "refcell"} & set((attrs.get("class") or "").split())
        ):
            self.found.append((self.stack, attrs["class"].split(), attrs.get("data-cell")))


def page_cells(text):
    parser = Cells()
    parser.feed(text)
    return parser


def terminal_text(report, color_system=None):
    console = Console(record=True, width=200, color_system=color_system, file=open(os.devnull, "w"))
    terminal.render(report, console)
    return console.export_text(styles=False)


def test_every_renderer_draws_the_same_grid(tmp_path):
    write_results(tmp_path / "results")
    report = collect(tmp_path / "results", tmp_path / "report")
    assert report["problems"] == []
    assert json.loads(json.dumps(report)) == report, "observations.json holds it all"
    today = report["stacks"]["today"]
    assert today["observed"] == 32 and [c["letter"] for c in today["causes"]] == ["A", "B"]
    assert sum(len(c["cells"]) for c in today["causes"]) == 32 - today["reproduced"]
    row = next(r for r in today["rows"] if r["differs_from_seed"])
    assert row["evidence"]["clients"][0]["server_events"][0]["at"] == 0.1
    assert {e["event"] for e in row["evidence"]["server_events"]} == {"listening"}

    page = page_cells(html.render(report))
    observed = [c for c in page.found if "cell" in c[1]]
    assert len(observed) == 64 and len(page.found) == 128, "two grids per stack"
    for stack in ("today", "seed"):
        for r in report["stacks"][stack]["rows"]:
            classes = next(c[1] for c in observed if c[2] == r["id"])
            assert layout.VERDICT_CLASS[r["verdict"]] in classes, (r["id"], classes)
            assert ("m-seed" in classes) == r["differs_from_seed"], (r["id"], classes)
            assert f"ev-{r['id']}" in page.ids, f"no drill-down panel for {r['id']}"
    for c in today["causes"]:
        assert c["id"] in page.ids

    md = markdown.render(report)
    assert md.count("\n1. ") == 64, "the seed's own list, one line per cell"
    assert md.count("| **") == 3, "the seed's published grid, then one grid per stack"
    assert "rum<br>hello_goodbyer<br>streaming" in md and "(True, False" not in md
    assert md.count(today["causes"][0]["text"]) == 1, "a cause is written once"

    text = terminal_text(report)
    assert "seed (published, 2016)" in text and "today stack" in text
    assert "+*oA" in text, "a cell: verdict, differs from the seed, left open, its cause"
    assert "\x1b[" not in text


def test_a_disagreement_or_a_missing_session_fails_and_is_marked(tmp_path):
    broken = Cell("seed", True, False, True, True, True)
    write_results(tmp_path / "results", flip=broken, drop="matrix(agent=True, fixed=False)")
    path = tmp_path / "results" / "matrix-agent-False-fixed-True.json"
    doc = json.loads(path.read_text())
    doc["cells"][0]["controls"]["rum_script"] = False  # agrees with the model, yet not real
    path.write_text(json.dumps(doc))
    out = tmp_path / "report"
    assert (
        report_module.main(
            [
                "--results",
                str(tmp_path / "results"),
                "--out",
                str(out),
                "--history",
                str(tmp_path / HISTORY_SAMPLE),
            ]
        )
        == 1
    )
    report = json.loads((out / "observations.json").read_text())
    problems = "\n".join(report["problems"])
    assert "matrix(agent=True, fixed=False): no results file" in problems
    assert "but the model expects" in problems
    rows = {r["id"]: r for s in report["stacks"].values() for r in s["rows"]}
    flipped = rows[broken.slug()]
    assert flipped["matches_model"] is False and "model" in layout.marks(flipped)
    assert sum(r["status"] == "missing" for r in rows.values()) == 8
    assert "positive controls failed: ['rum_script']" in problems
    assert [r["id"] for r in rows.values() if "controls" in layout.marks(r)] == [
        Cell("today", False, True, False, False, False).slug()
    ]
    page = page_cells((out / "index.html").read_text())
    classes = {c[2]: c[1] for c in page.found if "cell" in c[1]}
    assert "m-model" in classes[broken.slug()]
    assert sum("v-missing" in c for c in classes.values()) == 8
    md = (out / "observations.md").read_text()
    assert md.count("🟨 ?") == 8 and "!" in md
    text = terminal_text(report)
    assert text.count(" ? ") + text.count(" ?\n") >= 8 and "!" in text


@pytest.mark.parametrize(
    ("status", "allowed"),
    [(-signal.SIGABRT, True), (-signal.SIGSEGV, False)],
    ids=["abort", "other"],
)
def test_only_the_death_the_model_allows_excuses_what_it_cut_short(tmp_path, status, allowed):
    results = tmp_path / "results"
    write_results(results)
    path = results / "matrix-agent-False-fixed-False.json"
    doc = json.loads(path.read_text())
    cut = doc["cells"][0]
    cut["expected"]["may_die"] = GWS_READER_ABORT
    cut["controls"][SERVER_LIVED] = False
    cut["server_died"] = {"status": status, "stderr": f"GET /view\n{DEATHS[GWS_READER_ABORT][1]}\n"}
    cut["observed"][1]["verdict"] = {"+": "-", "-": "+"}[cut["observed"][1]["verdict"]]
    path.write_text(json.dumps(doc))
    out = tmp_path / "report"
    report = collect(results, out)
    rows = {r["id"]: r for s in report["stacks"].values() for r in s["rows"]}
    row = rows[Cell(**cut["cell"]).slug()]
    assert row["died_of"] == (GWS_READER_ABORT if allowed else "")
    marked = {"died", "model", "controls"} & set(layout.marks(row))
    assert marked == ({"died"} if allowed else {"model", "controls"})
    problems = [p for p in report["problems"] if Cell(**cut["cell"]).label() in p]
    assert (problems == []) is allowed, problems


def test_optional_inputs_render_when_present_and_tolerate_extra_keys(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    write_results(
        results,
        stacks=("today", "seed", "deploy"),
        flip=Cell("deploy", False, False, False, False, False),
    )
    write_optional(results, out)
    report = collect(results, out)
    deploy = report["stacks"]["deploy"]
    assert deploy["reference"] == "today" and deploy["differs_from_reference"] == 1
    assert not deploy["required"]
    assert [t["link"] for t in report["conformance"]["targets"]] == [
        f"conformance/{name}/index.html"
        for name in ("today-patched", "today-vanilla", *(f"today-{h}" for h in HANDLERS))
    ]
    gws, newrelic = report["history"]["packages"]  # a file per package, by name
    assert [c["id"] for c in newrelic["flips"][0]["cells"]] == [FLIPPED.slug()]
    assert gws["range"] == ["0.9.5", "0.10.1"] and gws["in_range"] == 3
    assert [p["version"] for p in gws["probed"]] == ["0.9.5", "0.10", "0.10.1"]
    assert gws["flips"][0]["cells"] == [
        {
            "key": "seed ¬agent ¬fixed ¬rum ¬hello_goodbyer streaming",
            "before": "-",
            "after": "+",
            "id": "seed-agent_off-fixed_off-rum_off-hello_goodbyer_off-streaming_on",
            "label": "seed ¬agent ¬fixed ¬rum ¬hello_goodbyer streaming",
        }
    ]
    assert [p["status"] for p in newrelic["probed"]] == ["ok", "ok", "skipped"]
    # a cause names a release only where the committed history proves the model's
    # threshold: newrelic's sample does (2.68.0.50), gevent-websocket's (0.10.0) does not
    causes = " ".join(c["text"] for c in report["stacks"]["today"]["causes"])
    assert (
        "no lazy RUM middleware on them) since newrelic 2.68.0.50 (proven by "
        '`nox -s "history(newrelic)"`)'
    ) in causes
    assert (
        '(the release that changed it is not yet proven by `nox -s "history(gevent-websocket)"`)'
    ) in causes
    assert report["bench"]["ratios"][0]["target"] == 0.97
    assert [g["group"] for g in report["timing"]] == [
        "today agent off",
        "today agent on",
        "seed agent off",
        "seed agent on",
        "deploy agent off",
        "deploy agent on",
    ]

    text = html.render(report)
    page = page_cells(text)
    assert {"conformance", "history", "bench", "timing", "stack-deploy"} <= page.ids
    assert sum(1 for c in page.found if c[0] == "deploy" and "cell" in c[1]) == 32
    assert "today stack (this run)" in text, "deploy is drawn beside today's grid"
    deployed = Cell("deploy", False, False, False, False, False)
    assert "m-reference" in next(c[1] for c in page.found if c[2] == deployed.slug())
    assert f'href="#ev-{FLIPPED.slug()}">{FLIPPED.label()}' in text, "a flipped cell links to it"
    assert f"{FLIPPED.label()}</a> <b>- → +</b>" in text
    assert "<code>handler_iterates</code> from 0.10.0" in text
    assert "&lt;script&gt;" in text and "<script>\n+x" not in text, "a diff is escaped"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "nothing from the network"
    md = markdown.render(report)
    for heading in ("## Autobahn|Testsuite", "## History", "## Benchmarks", "≈"):
        assert heading in md
    assert "2.66.0.49 → 2.68.0.50 flips 1 cells" in md
    text = terminal_text(report)
    assert "deploy stack" in text and "Autobahn today-vanilla" in text


def test_absent_optional_inputs_leave_no_section(tmp_path):
    write_results(tmp_path / "results")
    report = collect(tmp_path / "results", tmp_path / "report")
    assert report["conformance"] is report["history"] is report["bench"] is None
    ids = page_cells(html.render(report)).ids
    assert not {"conformance", "history", "bench"} & ids and "timing" in ids
    assert "≈" not in markdown.render(report), "no reference mark without a deploy stack"


def test_a_committed_history_file_that_cannot_be_read_is_a_named_problem(tmp_path):
    write_results(tmp_path / "results")
    history = tmp_path / HISTORY_SAMPLE
    history.mkdir()
    (history / "newrelic.json").write_text(json.dumps({"schema": 1, "package": "newrelic"}))
    report = collect(tmp_path / "results", tmp_path / "report")
    assert report["problems"] == [
        f"{history / 'newrelic.json'}: schema 1, this report reads schema {SCHEMA}: rerun "
        '`nox -s "history(newrelic)" -- --update`'
    ]
    assert report["history"] is None


def test_an_unreadable_optional_input_is_a_named_problem(tmp_path):
    write_results(tmp_path / "results")
    (tmp_path / "results" / "conformance.json").write_text("{ truncated")
    report = collect(tmp_path / "results", tmp_path / "report")
    assert len(report["problems"]) == 1
    assert "conformance.json: not JSON" in report["problems"][0]
    assert "rerun `nox -s conformance`" in report["problems"][0]


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        ({}, False),  # piped
        ({"FORCE_COLOR": "1"}, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
    ],
)
def test_the_terminal_grid_is_coloured_only_where_it_can_be(tmp_path, env, coloured):
    write_results(tmp_path / "results")
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.harness.report",
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(tmp_path / "report"),
            "--history",
            str(tmp_path / HISTORY_SAMPLE),
        ],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ("\x1b[" in proc.stdout) == coloured, proc.stdout[:500]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert "agent off · fixed off" in plain and "today stack" in plain
    grid = plain[: plain.index("+ pass, - fail")]
    assert max(len(line) for line in grid.splitlines()) <= 80, grid


def test_a_stack_read_against_another_differs_in_any_compared_column():
    """deploy vs today: a close() or close-frame difference is a finding, not only a verdict."""

    def row(**changed):
        return {
            "agent": True,
            "fixed": False,
            "rum": True,
            "hello_goodbyer": False,
            "streaming": True,
            "status": "observed",
            "verdict": "+",
            "closed": False,
            "valid_close_frame": True,
            **changed,
        }

    rows = [
        row(),
        row(rum=False, closed=True),
        row(streaming=False, valid_close_frame=False),
        row(hello_goodbyer=True, status="missing"),
    ]
    today = [row(), row(rum=False), row(streaming=False), row(hello_goodbyer=True)]
    report_module.compare_with(rows, today)
    assert [r["reference_differs"] for r in rows] == [[], ["closed"], ["valid_close_frame"], []]


def test_a_results_file_of_another_schema_is_one_line_naming_the_file_and_its_session(tmp_path):
    write_results(tmp_path / "results")
    path = tmp_path / "results" / "matrix-agent-False-fixed-True.json"
    doc = json.loads(path.read_text())
    del doc["schema"]  # as written before records.py: schema 1
    path.write_text(json.dumps(doc))
    report = collect(tmp_path / "results", tmp_path / "report")
    assert report["problems"] == [
        f"{path}: schema 1, this report reads schema {SCHEMA}: rerun "
        '`nox -s "matrix(agent=False, fixed=True)"`'
    ]


# -- "Will my versions work?" (tests/harness/render/versions.py) --------------------------

PAGE_PLAN = ROOT / "tests" / "data" / "atlas" / "sample-page-plan.json"


def test_fold_drops_only_the_axes_a_prediction_does_not_vary_with():
    table = {
        ("a1", "b1", "c1"): "x",
        ("a1", "b2", "c1"): "x",
        ("a2", "b1", "c1"): "y",
        ("a2", "b2", "c1"): "y",
    }
    kept, keys = versions.fold(["a", "b", "c"], table)
    assert kept == ["a"]
    assert keys == {"a=a1": "x", "a=a2": "y"}
    assert versions.key_of(kept, {"a": "a2", "b": "b1", "c": "c1"}) == "a=a2"


def test_every_pick_finds_the_grid_the_model_gives_it():
    """Each layer's lookup, by the folded key, is the block predicted for that combination."""
    plan = json.loads(PAGE_PLAN.read_text())
    reads = [a for a in versions.MODEL_READS if a in plan["axes"]]
    predicted = versions.layer_predictions(plan, list(versions.layer_axes(plan)), reads)
    for layer, found in predicted.items():
        blocks = {b["id"]: b for b in found["blocks"]}
        for handler in plan["axes"]["handler"]["values"]:
            for gevent in plan["axes"]["gevent"]["values"]:
                picks = {a: plan["axes"][a]["values"][0]["version"] for a in reads}
                picks.update(handler=handler["version"], gevent=gevent["version"])
                shown = blocks[found["keys"][versions.key_of(found["key_axes"], picks)]]
                want = versions.prediction_block(plan, picks, layer)
                assert {k: shown[k] for k in want} == want, (layer, picks)


def test_the_vanilla_handler_before_0_10_fails_its_lazy_cells_and_0_10_1_passes_them():
    plan = json.loads(PAGE_PLAN.read_text())
    picks = {"flask": "2.2.5", "gevent": "20.9.0", "newrelic": "14.1.0"}
    rows = {
        release: versions.prediction_block(
            plan, {**picks, "handler": f"gevent-websocket=={release}"}, "none"
        )["rows"]
        for release in ("0.9.5", "0.10.1")
    }
    vanilla_off = {r: next(x for x in rows[r] if x["label"] == "agent off · vanilla") for r in rows}
    assert "".join(c["verdict"] for c in vanilla_off["0.9.5"]["cells"]) == "+---+---"
    assert "".join(c["verdict"] for c in vanilla_off["0.10.1"]["cells"]) == "+" * 8
    labels = [
        r["label"]
        for r in versions.prediction_block(plan, {**picks, "handler": "flask-sock==0.7.0"}, "none")[
            "rows"
        ]
    ]
    assert labels == ["agent on · flask-sock", "agent off · flask-sock"]


def test_a_stack_s_picks_are_read_from_its_pins():
    plan = json.loads(PAGE_PLAN.read_text())
    a04 = next(s for s in plan["stacks"] if s["id"] == "a04")
    assert versions.stack_picks(plan, a04) == {
        "python": "3.12",
        "flask": "3.1.3",
        "gevent": "26.9.0",
        "handler": "gevent-ws==2.1.0",
        "newrelic": "14.1.0",
        "sentry-sdk": "2.75.0",
    }


def test_an_atlas_that_is_not_one_is_a_problem_and_none_is_a_hint(tmp_path):
    problems: list[str] = []
    assert versions.section(tmp_path, tmp_path, problems, PAGE_PLAN)["atlas"] is None
    assert problems == []
    (tmp_path / versions.ATLAS).write_text('{"entries": 3}')
    assert versions.section(tmp_path, tmp_path, problems, PAGE_PLAN)["atlas"] is None
    assert len(problems) == 1 and "not an atlas" in problems[0], problems
