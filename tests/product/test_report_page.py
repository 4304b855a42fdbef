"""report/index.html in a real browser: Debian's chromium, headless, driven by playwright.

The page `nox -s report` wrote is loaded from disk; the DOM is checked against
report/observations.json (the same run's data): 32 cells per required stack, each
with its verdict's class and its marks, the drill-down shows both transcripts, a
cause lights its cells, the page fits a phone's width, it loads nothing from the
network and logs no console error.  Screenshots land beside the page.

Playwright drives /usr/bin/chromium through executable_path: its own browser
download is never used (and could not work here).
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from tests.harness.cells import Cell
from tests.harness.missing import missing, skip_or_fail
from tests.harness.model import StackFacts, predict
from tests.harness.paths import DATA, REPORT
from tests.harness.records import NOT_STARTED
from tests.harness.render import layout
from tests.harness.report import REQUIRED_STACKS, main
from tests.harness.report_sample import write_handler_results, write_optional, write_results

INSTALL = "apt-get update && apt-get install -y chromium"
# Chromium as root, with nothing of its own reaching the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 20_000  # any one browser action (bound)
VERDICT_CLASS = {"+": "v-pass", "-": "v-fail"}
DESKTOP = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}


def chromium_path():
    # CHROMIUM: another Chromium-based binary (the GitHub job's Google Chrome).
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path:
        skip_or_fail(
            missing(
                "Debian's chromium is not installed",
                "the report page test",
                f"install it with: {INSTALL} (or name a Chromium binary in CHROMIUM)",
            ),
            pytest.skip,
            pytest.fail,
        )
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=path,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
            timeout=TIMEOUT_MS,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


class Page:
    """A page of the browser with everything it logged and requested."""

    def __init__(self, context, path):
        self.errors, self.requests = [], []
        self.page = context.new_page()
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "assert")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri(), wait_until="load")

    def check_clean(self):
        assert not self.errors, f"the page logged errors: {self.errors}"
        remote = [u for u in self.requests if not u.startswith(("file:", "data:"))]
        assert not remote, f"the page reached beyond its own file: {remote}"

    def close(self):
        self.page.close()


@pytest.fixture(scope="module")
def report():
    page, data = REPORT / "index.html", REPORT / "observations.json"
    if not page.is_file() or not data.is_file():
        pytest.fail(
            f"{page} or {data} is missing: run `nox -s report` first "
            "(`nox -t ci` runs it before this session)"
        )
    return json.loads(data.read_text())


@pytest.fixture
def page(browser, report):
    opened = Page(browser, REPORT / "index.html")
    yield opened
    opened.close()


def expected_class(row):
    if row["status"] == "observed":
        return VERDICT_CLASS[row["verdict"]]
    return {"skipped": "v-skipped", "not run": "v-notrun"}.get(row["status"], "v-missing")


def test_grid_cells_carry_their_verdicts(page, report):
    cells = page.page.eval_on_selector_all(
        "#grids table.grid.obs td.cell",
        "els => els.map(e => ({id: e.dataset.cell, "
        "stack: e.closest('table').dataset.stack, cls: [...e.classList]}))",
    )
    required = [c for c in cells if c["stack"] in REQUIRED_STACKS]
    assert len(required) == 32 * len(REQUIRED_STACKS) == 64, (
        f"expected 32 grid cells per stack {REQUIRED_STACKS}, found "
        f"{ {s: sum(c['stack'] == s for c in cells) for s in REQUIRED_STACKS} }"
    )
    by_id = {c["id"]: c for c in cells}
    for stack in REQUIRED_STACKS:
        for row in report["stacks"][stack]["rows"]:
            cell = by_id.get(row["id"])
            assert cell is not None, f"{row['id']}: in observations.json, not in the grid"
            assert expected_class(row) in cell["cls"], (
                f"{row['id']}: status {row['status']}, verdict {row.get('verdict')}; "
                f"classes {cell['cls']}"
            )
            assert ("m-seed" in cell["cls"]) == bool(row.get("differs_from_seed")), (
                f"{row['id']}: differs_from_seed={row.get('differs_from_seed')}, classes "
                f"{cell['cls']}"
            )
            assert ("m-model" in cell["cls"]) == (
                row["status"] == "observed" and not row["matches_model"]
            ), row["id"]
    reference = page.page.locator("table.grid.ref td.refcell").count()
    assert reference >= 64, f"the seed's published grid beside each stack: {reference} cells"
    # the grids of both stacks, each beside the seed's published one
    page.page.locator("#grids").screenshot(path=str(REPORT / "screenshot.png"))
    page.check_clean()


def test_drilldown_opens_and_shows_both_transcripts(page, report):
    rows = [
        r for s in REQUIRED_STACKS for r in report["stacks"][s]["rows"] if r["status"] == "observed"
    ]
    assert rows, "no observed cell to open"
    row = next((r for r in rows if r["differs_from_seed"]), rows[0])
    panel = page.page.locator(f"#ev-{row['id']}")
    assert not panel.is_visible(), "a cell's evidence shows before it is clicked"
    page.page.click(f"td.cell[data-cell='{row['id']}'] a")
    panel.wait_for(state="visible")
    transcripts = panel.locator("ol.transcript")
    assert transcripts.count() == len(row["clients"]) == 2, row["clients"]
    for i in range(transcripts.count()):
        text = transcripts.nth(i).inner_text()
        assert "Hello from view!" in text, f"{row['id']} transcript {i}: {text!r}"
    assert panel.locator("ol.events li").count() > 0, "no server event in the drill-down"
    body = panel.inner_text()
    for shown in (
        "Positive controls",
        "Versions",
        "Durations",
        "lazy layers it names",
        row["versions"]["gevent-websocket"],
    ):
        assert shown in body, f"{row['id']}: the drill-down does not show {shown!r}"
    page.page.screenshot(path=str(REPORT / "screenshot-drilldown.png"))
    page.page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    page.check_clean()


def test_a_cause_lights_the_cells_it_explains(page, report):
    causes = [c for s in REQUIRED_STACKS for c in report["stacks"][s].get("causes") or []]
    if not causes:
        pytest.skip("this run has no difference from the seed, so no cause to point at")
    cause = causes[0]
    page.page.hover(f"#{cause['id']}")
    lit = page.page.eval_on_selector_all("td.cell.lit", "els => els.map(e => e.dataset.cell)")
    assert sorted(lit) == sorted(cause["cells"]), (cause["text"], lit)
    page.check_clean()


def test_layers_section_beside_the_model_with_its_marks(page, report):
    """Each layer's observed grid beside the model's, per stack; the marks of a
    layer that never finished and of a server that kept TCP in the legend; a layer
    cell's drill-down shows the layer events the server emitted."""
    layers = report.get("layers") or {}
    ran = [
        (stack, one)
        for stack, s in layers.get("stacks", {}).items()
        for one in s["layers"]
        if any(r["status"] == "observed" for b in one["builds"] for r in b["rows"])
    ]
    if not ran:
        pytest.skip("no layer session in this run's results (`nox -s layer`)")
    assert page.page.locator("#layers").is_visible(), "the layers section is not shown"
    for stack, layer in ran:
        for which in ("obs", "ref"):
            grid = page.page.locator(
                f"table.grid.layers.{which}[data-stack='{stack}'][data-layer='{layer['layer']}']"
            )
            assert grid.count() == 1, f"{stack} {layer['layer']}: no {which} grid"
            observed = sum(bool(r) for b in layer["builds"] for r in b["rows"])
            assert grid.locator("tbody td").count() == observed, (stack, layer["layer"])
    legend = page.page.locator(".legend").first.inner_text()
    for mark in ("◔", "⧖"):
        assert mark in legend, f"the legend has no {mark}"
    stack, layer = ran[0]
    row = next(
        r
        for b in layer["builds"]
        for r in b["rows"]
        if r["status"] == "observed" and r["layer"] != "none"
    )
    page.page.click(f"#layers td.cell[data-cell='{row['id']}'] a")
    panel = page.page.locator(f"#ev-{row['id']}")
    panel.wait_for(state="visible")
    events = " ".join(panel.locator("ol.events").all_inner_texts())
    assert (
        "layer_finished" in events
        or "layer_skipped" in events
        or row["layer_finished"] in (False, NOT_STARTED)
    ), f"{row['id']}: no layer event in the drill-down"
    assert f"layer {row['tracked_layer']} finished" in panel.inner_text()
    page.page.locator("#layers").screenshot(path=str(REPORT / "screenshot-layers.png"))
    page.page.keyboard.press("Escape")
    page.check_clean()


def test_fits_a_phone_in_dark_mode(page):
    page.page.emulate_media(color_scheme="dark")
    page.page.set_viewport_size(PHONE)
    width = page.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways on a phone: {width}"
    background = page.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "no dark mode: the body stays white"
    page.page.locator("#stack-today").screenshot(path=str(REPORT / "screenshot-phone-dark.png"))
    page.check_clean()


def test_every_optional_section_renders_in_the_browser(browser, tmp_path):
    """Sample inputs of the other sessions (deploy, Autobahn, history, bench) on one page."""
    results, out = tmp_path / "results", tmp_path / "report"
    write_results(
        results,
        stacks=("today", "seed", "deploy"),
        flip=Cell("deploy", False, False, False, False, False),
    )
    write_optional(results, out)
    assert main(["--results", str(results), "--out", str(out)]) == 1  # the flipped cell
    opened = Page(browser, out / "index.html")
    try:
        for section in ("#stack-deploy", "#conformance", "#history", "#timing", "#bench"):
            assert opened.page.locator(section).is_visible(), f"{section} is not shown"
        deploy = opened.page.locator("table.grid.obs[data-stack=deploy] td.cell")
        assert deploy.count() == 32
        assert opened.page.locator("#bench .range .dot").count() == 2
        assert opened.page.locator("#timing .hbar").count() == 6 + 1  # + the bench's run
        opened.page.screenshot(path=str(tmp_path / "sections.png"), full_page=True)
        opened.check_clean()
    finally:
        opened.close()


def test_the_which_handler_table_links_every_figure_to_its_evidence(browser, tmp_path):
    """One row per handler, each observed figure a link to a file or an anchor
    that exists (sample results of the handler sessions, Autobahn and the bench)."""
    results, out = tmp_path / "results", tmp_path / "report"
    write_results(results, stacks=("today",))
    write_handler_results(results)
    write_optional(results, out)
    main(["--results", str(results), "--out", str(out)])
    opened = Page(browser, out / "index.html")
    try:
        table = opened.page.locator("#handlers table#which-handler")
        assert table.is_visible(), "the which-handler section is not shown"
        rows = table.locator("tbody tr")
        labels = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
        assert len(labels) == 4, labels
        for want, label in zip(
            ("(vanilla)", "(patched)", "gevent-ws", "flask-sock"), labels, strict=True
        ):
            assert want in label, f"row {label!r}: expected {want}"
        linked = {
            "cells passed",
            "close() called",
            "Autobahn non-OK outside compression",
            "protocol checks passed",
        }
        for i in range(rows.count()):
            row = rows.nth(i)
            for column in linked:
                cell = row.locator(f'td[data-column="{column}"]')
                assert cell.locator("a").count() == 1, (
                    f"{labels[i]}: {column} ({cell.inner_text()!r}) links to no evidence"
                )
            throughput = row.locator('td[data-column="throughput ratio vs patched"]')
            if "reference" not in throughput.inner_text():
                assert throughput.locator("a").count() == 1, f"{labels[i]}: throughput"
        hrefs = table.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs
        for href in hrefs:
            if href.startswith("#"):
                assert opened.page.locator(href).count() == 1, f"{href}: no such anchor"
            else:
                assert (out / href.split("#")[0]).resolve().is_file(), f"{href}: no such file"
        # the deviations behind a handler's Autobahn figure are on the page, in prose
        assert opened.page.locator("#deviations-today-flask-sock li").count() == 2
        opened.page.screenshot(path=str(tmp_path / "handlers.png"), full_page=True)
        opened.check_clean()
    finally:
        opened.close()


SAMPLE_PLAN = DATA / "atlas" / "sample-page-plan.json"
SAMPLE_ATLAS = DATA / "atlas" / "sample-page-atlas.json"
EVIDENCE = "stack-atlas-agent-False-fixed-False.json"  # a run's file the page links


@pytest.fixture(scope="module")
def atlas_page(browser, tmp_path_factory):
    """A page built from the sample atlas and plan; the runs a01 and a02 left files."""
    tmp = tmp_path_factory.mktemp("atlas")
    results, out = tmp / "results", tmp / "report"
    write_results(results, stacks=("today",))
    out.mkdir()
    shutil.copy(SAMPLE_ATLAS, out / "atlas.json")
    for run in ("a01", "a02"):
        (results / "atlas" / run).mkdir(parents=True)
        (results / "atlas" / run / EVIDENCE).write_text("{}\n")
    main(["--results", str(results), "--out", str(out), "--plan", str(SAMPLE_PLAN)])
    opened = Page(browser, out / "index.html")
    try:
        yield opened, out
    finally:
        opened.close()


def pick(page, **picks):
    for axis, value in picks.items():
        page.locator(f'#picks select[data-axis="{axis}"]').select_option(value)


def shown_verdicts(page, layer, row):
    """The verdicts of one row of the layer's grid the picks show (exactly one is shown)."""
    shown = page.locator(f'figure.prediction[data-layer="{layer}"]:not([hidden])')
    assert shown.count() == 1, f"{layer}: {shown.count()} grids shown, expected one"
    cells = shown.locator("tbody tr", has=page.locator(f'th:text-is("{row}")')).locator("td")
    return "".join(cells.evaluate_all("tds => tds.map(td => td.dataset.verdict)"))


def model_verdicts(versions, agent, fixed):
    facts = StackFacts.from_versions(versions)
    return "".join(
        predict(Cell("atlas", agent, fixed, *col), facts).verdict for col in layout.COLUMNS
    )


def test_without_an_atlas_the_section_says_how_to_make_one(browser, tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    write_results(results, stacks=("today",))
    main(["--results", str(results), "--out", str(out), "--plan", str(SAMPLE_PLAN)])
    opened = Page(browser, out / "index.html")
    try:
        line = opened.page.locator("#versions p.no-atlas").inner_text()
        assert "No atlas yet" in line and "nox -s atlas -- --sample 8" in line, line
        assert "--build" in line, line
        assert opened.page.locator("#picks").count() == 0
        opened.check_clean()
    finally:
        opened.close()


def test_picking_the_handler_release_changes_the_prediction_as_the_model_says(atlas_page):
    opened, _ = atlas_page
    page = opened.page
    assert page.locator("#versions h2").inner_text() == "Will my versions work?"
    shown = {}
    for release in ("0.9.5", "0.10.1"):
        pick(page, handler=f"gevent-websocket=={release}", newrelic="14.1.0")
        shown[release] = shown_verdicts(page, "none", "agent off · vanilla")
        want = model_verdicts({"gevent-websocket": release, "newrelic": "14.1.0"}, False, False)
        assert shown[release] == want, (
            f"gevent-websocket {release} vanilla, agent off: the page shows {shown[release]}, "
            f"the model predicts {want}"
        )
    assert shown["0.9.5"] != shown["0.10.1"], f"the pick changed nothing: {shown}"
    opened.check_clean()


def test_a_combination_no_run_covers_is_predicted_not_observed(atlas_page):
    opened, _ = atlas_page
    page = opened.page
    coverage = page.locator('p.coverage[data-layer="none"]')
    # a01's own picks: observed there
    pick(
        page,
        python="2.7",
        flask="1.1.4",
        gevent="1.1.2",
        handler="gevent-websocket==0.9.5",
        newrelic="2.66.0.49",
    )
    assert coverage.locator("b").inner_text() == "observed", coverage.inner_text()
    assert coverage.locator(".run").all_inner_texts() == ["a01"], coverage.inner_text()
    # the same on Python 3.12: no run has it
    pick(page, python="3.12")
    text = coverage.inner_text()
    assert coverage.locator("b").inner_text() == "predicted, not observed", text
    assert "a01" in text and "python 2.7" in text, f"a01 is the nearest run: {text}"
    opened.check_clean()


def test_a_run_links_to_its_evidence_file(atlas_page):
    opened, out = atlas_page
    page = opened.page
    pick(page, handler="gevent-websocket==0.10.1", gevent="20.12.0", flask="2.2.5")
    hrefs = page.locator("#versions a.run").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert hrefs, "no run is linked"
    for href in hrefs:
        assert (out / href).resolve().is_file(), f"{href}: no such file"
    assert any(h.endswith(f"a02/{EVIDENCE}") for h in hrefs), hrefs
    # a run that left no files here is named, not linked
    assert page.locator('#atlas-runs tr[data-stack="a03"] a.run').count() == 0
    entries = page.locator("#atlas-entries tbody tr")
    assert entries.count() == len(json.loads(SAMPLE_ATLAS.read_text())["entries"])
    opened.check_clean()


def test_the_prediction_is_readable_without_javascript(atlas_page):
    """Without the script the page shows one grid per layer: the default picks'."""
    _, out = atlas_page
    html = (out / "index.html").read_text()
    for layer in ("none", "sentry"):
        figures = re.findall(
            rf'<figure class="grid-wrap prediction" [^>]*data-layer="{layer}"[^>]*>', html
        )
        assert figures, f"{layer}: no grid"
        assert sum("hidden" not in f for f in figures) == 1, f"{layer}: {figures}"


def test_a_pair_the_plan_cannot_install_is_said_so(atlas_page):
    opened, _ = atlas_page
    page = opened.page
    note = page.locator("#picks-note")
    pick(page, python="3.8", flask="3.1.3")
    assert note.is_hidden(), note.inner_text()
    pick(page, python="2.7")
    assert note.is_visible() and "requires Python >=3.9" in note.inner_text()
    opened.check_clean()


def test_the_versions_section_fits_a_phone(atlas_page):
    opened, _ = atlas_page
    page = opened.page
    page.set_viewport_size(PHONE)
    try:
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page scrolls sideways on a phone: {width}"
        page.locator("#versions").screenshot(path=str(REPORT / "screenshot-versions-phone.png"))
    finally:
        page.set_viewport_size(DESKTOP)
    opened.check_clean()
