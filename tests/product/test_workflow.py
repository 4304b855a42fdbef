"""The GitHub workflow (.github/workflows/matrix.yml) checked against nox.

Run by `nox -s workflow`, which installs the tools ([dependency-groups] workflow):
actionlint and shellcheck as wheels that ship their binaries, zizmor, PyYAML, and
nox + uv at .ci/run's pins.

- actionlint finds nothing; zizmor (offline) finds nothing of high severity;
  every action is pinned to a commit with its version in a comment.
- The jobs run exactly the sessions `nox -l --json` lists (the main job): the
  workflow's own `sessions` step (`nox -l --json | python .github/sessions.py ...`)
  is run here and its job lists, plus the sessions the workflow runs by name, are
  compared with nox and with the results files the report expects; each arm's
  job also runs that arm's `checks(...)` session of `nox -t ci -l --json`.
- The rehearsal runs every listed session with its job's exact command (plus -R,
  reusing the environments a plain `nox` just made) into a separate results
  directory, then the report job's command, and compares the table, cell by cell,
  with the one the plain `nox` wrote to report/observations.json.  It needs that
  plain run first: `nox -t ci` runs this session last, after `report`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness.cells import (
    MAIN_STACKS,
    SESSION_KIND,
    checks_name,
    session_name,
    sessions,
    slug,
)
from tests.harness.missing import missing, skip_or_fail
from tests.harness.paths import REPORT, ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML comes with `nox -s workflow`")

WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"
CI_RUN = ROOT / ".ci" / "run"
PER_SESSION_JOBS = {"today": "matrix", "seed": "seed"}  # workflow job -> sessions.py output
SESSION_TIMEOUT = 900
REHEARSAL_JOBS = 2  # per-session jobs rehearsed at once
TEST_COMMAND = "nox -t ci"
# The atlas's jobs: on the schedule and by hand only, outside the gate (skipped on a push).
ATLAS_JOBS = ("atlas-pythons", "atlas-plan", "atlas", "atlas-merge")
ATLAS_EVENTS = {"schedule", "workflow_dispatch"}
# What each atlas step passes `nox -s atlas --`: a flag of tests/harness/atlas/_cli.py
ATLAS_FLAGS = {"--refresh": 0, "--matrix": 1, "--shard": 1, "--build": 0}


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH; run these tests with `nox -s workflow`")
    return path


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def step(job, step_id):
    found = [s for s in job["steps"] if s.get("id") == step_id]
    assert len(found) == 1, f"expected one step with id {step_id!r}"
    return found[0]


def command(run, env):
    """A one-line run script as argv, $VARS taken from the step's env."""
    assert "\n" not in run.strip() and not re.search(r"[|;&<>`]", run), run
    argv = shlex.split(run)
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], arg) for arg in argv]


def nox_list(*select):
    """The sessions `nox -l --json` selects: a plain `nox`'s, or those of ``select``."""
    proc = subprocess.run(
        [tool("nox"), "-l", "--json", *select],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [entry["session"] for entry in json.loads(proc.stdout)]


@pytest.fixture(scope="module")
def outputs(workflow, tmp_path_factory):
    """Run the workflow's own `sessions` step and read what it wrote to GITHUB_OUTPUT."""
    tool("nox")
    out = tmp_path_factory.mktemp("github") / "output"
    out.touch()
    script = step(workflow["jobs"]["sessions"], "list")["run"]
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=ROOT,
        check=True,
        env={**os.environ, "GITHUB_OUTPUT": str(out)},
        timeout=120,
        capture_output=True,
        text=True,
    )
    values = dict(line.split("=", 1) for line in out.read_text().splitlines() if line)
    return {key: json.loads(value) for key, value in values.items()}


# -- linters ---------------------------------------------------------------------


def test_actionlint_finds_nothing():
    proc = subprocess.run(
        [
            tool("actionlint"),
            "-no-color",
            "-shellcheck",
            tool("shellcheck"),
            "-pyflakes",
            "",
            str(WORKFLOW.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_high():
    proc = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", str(WORKFLOW)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # 0: no findings; 10-14: findings, by highest severity; anything else: zizmor failed
    assert proc.returncode == 0 or 10 <= proc.returncode <= 14, proc.stderr
    findings = json.loads(proc.stdout)
    high = [
        f"{f['ident']}: {f['desc']} ({f['locations'][0]['symbolic']['annotation']})"
        for f in findings
        if f["determinations"]["severity"].lower() == "high"
    ]
    assert not high, "\n".join(high)


def test_actions_are_pinned_to_commits_with_their_version():
    for number, line in enumerate(WORKFLOW.read_text().splitlines(), 1):
        if re.match(r"\s*(-\s+)?uses:", line):
            assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), (
                f"matrix.yml:{number}: pin to a full commit SHA with `# vX.Y.Z`: {line.strip()}"
            )


def test_nox_and_uv_pins_match_ci_run():
    def pins(text):
        return sorted(set(re.findall(r"\b(nox|uv)==([\w.]+)", text)))

    expected = pins(CI_RUN.read_text())
    assert [name for name, _ in expected] == ["nox", "uv"]
    assert pins(WORKFLOW.read_text()) == expected
    pyproject = (ROOT / "pyproject.toml").read_text()
    workflow_group = re.search(r"(?ms)^workflow = \[(.*?)^\]", pyproject).group(1)
    assert pins(workflow_group) == expected


def test_ci_run_and_the_readme_name_one_test_command():
    """.ci/run runs exactly the README's test command, `nox -t ci`, and nothing after it."""
    commands = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == TEST_COMMAND and [c for c in commands if c.startswith("nox")] == [
        TEST_COMMAND
    ], f".ci/run must end with `{TEST_COMMAND}`: {commands[-3:]}"
    readme = (ROOT / "README.md").read_text()
    assert f"\n    {TEST_COMMAND}\n" in readme and "test command" in readme, (
        f"README.md must show `{TEST_COMMAND}` as the test command"
    )


# -- the jobs against nox ------------------------------------------------------------


def test_jobs_run_exactly_the_sessions_nox_lists(workflow, outputs):
    listed, ci = nox_list(), nox_list("-t", "ci")
    entries = [entry for key in PER_SESSION_JOBS.values() for entry in outputs[key]]
    by_name = set()
    for job_id, job in workflow["jobs"].items():
        if job_id in ATLAS_JOBS:  # the scheduled ones: test_atlas_jobs_run_the_atlas_session
            continue
        for s in job["steps"]:
            by_name.update(re.findall(r"\bnox -s ([\w-]+)", s.get("run", "")))
    main = sorted(by_name & set(listed))
    assert sorted([e["name"] for e in entries] + main) == sorted(listed), (
        "the sessions the workflow runs differ from `nox -l --json` (the main job)"
    )
    assert sorted(e["checks"] for e in entries) == sorted(
        s for s in ci if s.startswith("checks(")
    ), "each arm's job runs its checks(...) session"
    ci_names = {s.partition("(")[0] for s in ci}  # `nox -s reliability` runs each parameter
    assert by_name <= ci_names, (
        f"the workflow runs sessions `nox -t ci` does not: {sorted(by_name - ci_names)}"
    )
    assert ci_names - by_name == {"matrix", "seed", "checks"}, (
        f"sessions of `nox -t ci` without a job in {WORKFLOW.name}: "
        f"{sorted(ci_names - by_name - {'checks'})}; add a job that runs `nox -s <name>`"
    )


def sessions_module():
    spec = importlib.util.spec_from_file_location("sessions", ROOT / ".github" / "sessions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_default_session_without_a_job_stops_the_workflow():
    module = sessions_module()
    listed = [
        {"session": "matrix(agent=False, fixed=False)", "name": "matrix"},
        {"session": "seed(agent=False, fixed=False)", "name": "seed"},
    ]
    assert module.outputs(listed, ["3.11"])["python"] == ["3.11"]
    with pytest.raises(SystemExit, match="without a job"):
        module.outputs([*listed, {"session": "lint", "name": "lint"}], ["3.11"])


def test_job_lists_are_the_sessions_the_report_reads(outputs):
    expected = sorted(
        (session_name(*s), slug(session_name(*s)), checks_name(*s)) for s in sessions()
    )
    got = sorted(
        (e["name"], e["slug"], e["checks"])
        for key in PER_SESSION_JOBS.values()
        for e in outputs[key]
    )
    assert got == expected


def test_each_session_job_runs_its_session_and_uploads_its_files(workflow, outputs):
    for job_id, key in PER_SESSION_JOBS.items():
        job = workflow["jobs"][job_id]
        expected = "${{ fromJSON(needs.sessions.outputs." + key + ") }}"
        assert job["strategy"]["matrix"]["session"] == expected
        nox = step(job, "nox")
        assert nox["env"]["SESSION"] == "${{ matrix.session.name }}"
        assert command(nox["run"], {"SESSION": "S"}) == ["nox", "-s", "S"]
        checks = step(job, "checks")
        assert checks["env"]["CHECKS"] == "${{ matrix.session.checks }}"
        assert command(checks["run"], {"CHECKS": "C"}) == ["nox", "-s", "C"]
        assert checks["if"] == "${{ !cancelled() }}", "an arm's checks run after failed cells"
        upload = [
            s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
        ]
        assert len(upload) == 1
        paths = upload[0]["with"]["path"].splitlines()
        assert "results/${{ matrix.session.slug }}.json" in paths
        assert "results/${{ matrix.session.slug }}.junit.xml" in paths
        assert "results/${{ matrix.session.checks_slug }}.junit.xml" in paths
    # today's stack: the Python axis, the same for its jobs and its reports
    axis = "${{ fromJSON(needs.sessions.outputs.python) }}"
    for job_id in ("today", "reliability", "report"):
        assert workflow["jobs"][job_id]["strategy"]["matrix"]["python"] == axis, job_id
    assert outputs["python"] and all(re.fullmatch(r"3\.\d+", v) for v in outputs["python"])


def test_gate_needs_every_job_and_runs_always(workflow):
    gate = workflow["jobs"]["gate"]
    assert gate["if"] == "always()"
    assert sorted(gate["needs"]) == sorted(set(workflow["jobs"]) - {"gate", *ATLAS_JOBS})
    assert "needs.*.result" in gate["steps"][-1]["env"]["RESULTS"]


# -- the rehearsal ----------------------------------------------------------------------


def table(report):
    """{cell: what the report says of it}, without timings or paths; the stacks the
    per-session jobs run (a deploy grid comes from a job of its own, not rehearsed)."""
    keys = (
        "status",
        "verdict",
        "seed",
        "expected",
        "matches_model",
        "closed",
        "valid_close_frame",
        "differs_from_seed",
    )
    return {
        r["label"]: {k: r.get(k) for k in keys}
        for stack, data in report["stacks"].items()
        if stack in MAIN_STACKS
        for r in data["rows"]
    }


def test_rehearsal_of_the_fan_out_gives_the_plain_nox_table(workflow, outputs, tmp_path):
    baseline = REPORT / "observations.json"
    if not baseline.exists():
        skip_or_fail(
            missing(
                f"{baseline} is missing",
                "the rehearsal (it compares with a plain `nox` run)",
                "run `nox` first (`nox -t ci` runs this session after it)",
            ),
            pytest.skip,
            pytest.fail,
        )
    plain = json.loads(baseline.read_text())
    assert len(table(plain)) == 8 * len(sessions()), "a plain run's table has every cell"
    results, report = tmp_path / "results", tmp_path / "report"
    env = {**os.environ, "MATRIX_RESULTS": str(results)}

    def job(run, entry):
        """One per-session job's step, as its own process: (session, argv, exit, log)."""
        argv = command(run, {"SESSION": entry["name"]})
        argv[1:1] = ["-R"]  # reuse the plain run's environments, skip installs
        log = tmp_path / f"{entry['slug']}.log"
        with log.open("w") as out:
            proc = subprocess.run(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=SESSION_TIMEOUT,
            )
        return entry, argv, proc.returncode, log

    # Two jobs at a time, as plain `nox` runs their sessions (each its own environment).
    with ThreadPoolExecutor(REHEARSAL_JOBS) as pool:
        jobs = [
            pool.submit(job, step(workflow["jobs"][job_id], "nox")["run"], entry)
            for job_id, key in PER_SESSION_JOBS.items()
            for entry in outputs[key]
        ]
        done = [future.result() for future in jobs]
    ran = [(entry["name"], returncode) for entry, _, returncode, _ in done]
    for entry, argv, _, log in done:
        for suffix in (".json", ".junit.xml"):
            assert (results / f"{entry['slug']}{suffix}").exists(), (
                f"{' '.join(argv)} wrote no {entry['slug']}{suffix}; log: {log.read_text()[-3000:]}"
            )
    argv = command(step(workflow["jobs"]["report"], "report")["run"], {})
    argv[1:1] = ["-R"]
    proc = subprocess.run(
        [*argv, "--", "--out", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT,
    )
    rehearsed = json.loads((report / "observations.json").read_text())
    kinds = {SESSION_KIND[stack] for stack in MAIN_STACKS}

    def rehearsable(report):  # as table(): the per-session jobs' sessions
        return {n: s for n, s in report["sessions"].items() if n.partition("(")[0] in kinds}

    assert rehearsable(rehearsed) == rehearsable(plain), ran
    assert table(rehearsed) == table(plain), (
        f"the fan-out's table differs from the plain `nox` one (sessions: {ran}); "
        f"report:\n{proc.stdout[-3000:]}"
    )
    assert (report / "observations.md").read_text().count("\n1. ") == len(table(plain))


# -- the atlas -------------------------------------------------------------------------


SINCE = "${since[@]}"  # `--since <the committed plan>`, set where a refresh ran
PLAN_FILE = "tests/data/atlas/plan.json"
PREVIOUS = "report/atlas-previous-plan.json"


def atlas_commands(workflow):
    """[(job, step name, argv after `nox -s atlas --`)] of every nox call of the atlas
    jobs; a call of another session fails here."""
    found = []
    for job_id in ATLAS_JOBS:
        for s in workflow["jobs"][job_id]["steps"]:
            for line in s.get("run", "").splitlines():
                if not re.match(r"\s*nox\b", line):
                    continue
                argv = shlex.split(line.partition("|")[0])
                assert argv[:4] == ["nox", "-s", "atlas", "--"], f"{job_id}: {line.strip()}"
                found.append((job_id, s.get("name", s.get("id")), argv[4:]))
    return found


def test_atlas_jobs_run_the_atlas_session_on_the_schedule_and_by_hand(workflow):
    jobs = workflow["jobs"]
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert ATLAS_EVENTS <= set(triggers), triggers
    cron = triggers["schedule"][0]["cron"]
    assert len(cron.split()) == 5, cron
    for job_id in ("atlas-pythons", "atlas-plan"):
        condition = jobs[job_id]["if"]
        assert all(f"'{event}'" in condition for event in ATLAS_EVENTS), (job_id, condition)
        assert "push" not in condition and "pull_request" not in condition, condition
    assert set(jobs["atlas"]["needs"]) == {"atlas-plan", "python27", "atlas-pythons"}
    assert set(jobs["atlas-merge"]["needs"]) == {"atlas-plan", "atlas"}
    calls = atlas_commands(workflow)
    flags = []
    since = []  # the calls given `--since` the committed plan when a refresh ran
    for job_id, name, args in calls:
        assert args and args[0] in ATLAS_FLAGS, f"{job_id} / {name}: nox -s atlas -- {args}"
        if args[-1] == SINCE:
            since.append(args[0])
            args = args[:-1]
        assert len(args) == 1 + ATLAS_FLAGS[args[0]], f"{job_id} / {name}: {args}"
        flags.append((job_id, args[0]))
    assert since == ["--matrix", "--shard", "--build"], since
    refreshed = step(jobs["atlas-plan"], "refresh")["run"]
    assert refreshed.index(f"cp {PLAN_FILE} {PREVIOUS}") < refreshed.index("--refresh"), refreshed
    assert flags == [
        ("atlas-plan", "--refresh"),
        ("atlas-plan", "--matrix"),
        ("atlas", "--shard"),
        ("atlas-merge", "--build"),
    ], flags
    refresh = next(s for s in jobs["atlas-plan"]["steps"] if s.get("id") == "refresh")
    assert refresh["if"] == "${{ github.event_name == 'schedule' }}"
    assert "GITHUB_STEP_SUMMARY" in refresh["run"], "the refresh's diff goes to the summary"
    shard = step(jobs["atlas"], "shard")
    assert shard["env"]["SHARD"] == "${{ matrix.shard }}"
    assert shlex.split(shard["run"].splitlines()[-1])[4:6] == ["--shard", "$SHARD"], shard["run"]
    merge = jobs["atlas-merge"]
    assert "GITHUB_STEP_SUMMARY" in yaml.safe_dump(merge)
    uploads = [s["with"]["path"] for s in merge["steps"] if "upload-artifact@" in s.get("uses", "")]
    assert uploads and "report/atlas.json" in uploads[0].splitlines()


def test_atlas_flags_are_the_cli_s(workflow):
    """Each flag the atlas jobs pass is one `python -m tests.harness.atlas --help` names."""
    if importlib.util.find_spec("tests.harness.atlas") is None:
        skip_or_fail(
            missing(
                "tests/harness/atlas (the atlas CLI) is not in this checkout",
                "checking the atlas jobs' flags against the CLI",
                "merge the branch that adds `nox -s atlas`",
            ),
            pytest.skip,
            pytest.fail,
        )
    proc = subprocess.run(
        ["python", "-m", "tests.harness.atlas", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for job_id, name, args in atlas_commands(workflow):
        assert re.search(rf"(?m)^\s+{re.escape(args[0])}\b", proc.stdout), (
            f"{job_id} / {name}: the atlas CLI has no {args[0]}:\n{proc.stdout}"
        )


def test_atlas_matrix_output_becomes_the_shard_jobs(workflow):
    """sessions.py --atlas on the CLI's matrix (a stub of its output, in the CLI's
    format): every key the atlas job reads, the harness's Python last, 2.7 from the cache."""
    module = sessions_module()
    stub = (
        "nox > Running session atlas\n"
        '{"include": [{"shard": "1/3", "pythons": ["2.7", "3.6", "3.8"]},'
        ' {"shard": "3/3", "pythons": ["3.11", "3.12"]}]}\n'
    )
    matrix = module.atlas_matrix(stub)["include"]
    used = set(re.findall(r"matrix\.(\w+)", yaml.safe_dump(workflow["jobs"]["atlas"])))
    for entry in matrix:
        assert used <= set(entry), f"the atlas job reads {sorted(used - set(entry))}: {entry}"
        assert entry["setup"].splitlines()[-1] == module.HARNESS_PYTHON, entry
        unknown = {"2.7", *module.PYENV} & set(entry["setup"].splitlines())
        assert not unknown, f"setup-python has no {unknown} for the runner"
    assert [e["py27"] for e in matrix] == [True, False]
    assert [e["pyenv"] for e in matrix] == [True, False]
    assert [e["setup"] for e in matrix] == ["3.8\n3.11", "3.12\n3.11"]
    # what the shard restores is what atlas-pythons caches
    built = workflow["jobs"]["atlas-pythons"]["steps"][1]["with"]["path"]
    restored = [
        s["with"]["path"]
        for s in workflow["jobs"]["atlas"]["steps"]
        if s.get("if") == "${{ matrix.pyenv }}"
    ]
    assert restored == [built], (restored, built)
    assert [v.split("/")[-1][:3] for v in built.split()] == list(module.PYENV)
    assert [e["slug"] for e in matrix] == ["1-of-3", "3-of-3"]
    too_many = {"include": [{"shard": f"{k}/300", "pythons": ["3.11"]} for k in range(300)]}
    with pytest.raises(SystemExit, match="256"):
        module.atlas_matrix(json.dumps(too_many))
    with pytest.raises(SystemExit, match="no matrix"):
        module.atlas_matrix("error: no plan\n")
    # a refresh without a new release: no shard, and the shard job skipped
    assert module.atlas_matrix('{"include": []}') == {"include": []}
    assert workflow["jobs"]["atlas"]["if"] == "${{ needs.atlas-plan.outputs.shards != '0' }}"
    shards = int(workflow["env"]["ATLAS_SHARDS"])
    assert 0 < shards <= module.MAX_JOBS


def test_atlas_matrix_step_with_the_real_cli(workflow, tmp_path):
    """The atlas-plan job's own matrix step, run here: GITHUB_OUTPUT gets a matrix."""
    listed = subprocess.run(
        [tool("nox"), "-l", "--json", "-s", "atlas"], cwd=ROOT, capture_output=True, timeout=120
    )
    if listed.returncode != 0:  # nox: "Sessions not found"
        skip_or_fail(
            missing(
                "nox lists no atlas session",
                "the atlas matrix step's rehearsal",
                "merge the branch that adds `nox -s atlas`",
            ),
            pytest.skip,
            pytest.fail,
        )

    def matrix_step() -> dict[str, str]:
        out = tmp_path / "output"
        out.write_text("")
        subprocess.run(
            [
                "bash",
                "-eo",
                "pipefail",
                "-c",
                step(workflow["jobs"]["atlas-plan"], "matrix")["run"],
            ],
            cwd=ROOT,
            check=True,
            env={**os.environ, "GITHUB_OUTPUT": str(out), **workflow["env"]},
            timeout=SESSION_TIMEOUT,
            capture_output=True,
            text=True,
        )
        return dict(line.partition("=")[::2] for line in out.read_text().splitlines())

    found = matrix_step()
    include = json.loads(found["matrix"])["include"]
    assert 0 < len(include) <= int(workflow["env"]["ATLAS_SHARDS"]), include
    assert all(re.fullmatch(r"\d+/\d+", e["shard"]) for e in include), include
    assert found["shards"] == str(len(include)), found
    # after a refresh that found nothing new (the previous plan is this one): no shard
    previous = ROOT / "report" / "atlas-previous-plan.json"
    previous.parent.mkdir(exist_ok=True)
    shutil.copy(ROOT / "tests" / "data" / "atlas" / "plan.json", previous)
    try:
        assert matrix_step() == {"matrix": '{"include":[]}', "shards": "0"}
    finally:
        previous.unlink()
