"""A user's stack (tests/harness/userstack/): the input side.

What is read from a requirements file, what the model predicts from it, how bad
input is refused (one line, exit 2), and that a failed build leaves nothing behind.
The stacks themselves are served by tests/harness/stacklines.py (the `stacks` session).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.harness.cells import STACKS, Cell, seed_table
from tests.harness.paths import CACHE, DATA, ROOT
from tests.harness.userstack._env import build
from tests.harness.userstack._era import this_python
from tests.harness.userstack._errors import StackError, installer_failure
from tests.harness.userstack._predict import prediction_grid, run_predict
from tests.harness.userstack._registry import Registry, wheel_pythons
from tests.harness.userstack._request import GWS, Request, from_args, stack_name
from tests.harness.userstack._resolve import Plan

EXAMPLES = DATA / "stacks"


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tests.harness.userstack", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_reads_the_pins_that_matter_and_lists_the_others(tmp_path):
    base = tmp_path / "base.txt"
    base.write_text("greenlet==1.1.2\n")
    req = tmp_path / "requirements.txt"
    req.write_text("# a comment\n-r base.txt\n--index-url https://example.invalid/simple\n"
                   "Flask==2.0.2 \\\n    --hash=sha256:00\nrequests==2.26.0  # HTTP\n"
                   "gevent>=21\nsentry-sdk==1.5.0\nopentelemetry-api==1.8.0\n")
    request = from_args([], str(req))
    assert request.name == "requirements"
    assert set(request.requirements) == {"greenlet", "flask", "gevent", "sentry-sdk",
                                         "opentelemetry-api"}
    assert request.exact("Flask") == "2.0.2" and request.exact("gevent") is None
    assert request.layers() == ["sentry-sdk", "opentelemetry-api"]
    assert any("requests==2.26.0" in i for i in request.ignored)
    assert any("--index-url" in i for i in request.ignored)


@pytest.mark.parametrize(("pins", "says"), [
    (["Flask==1.0", "flask==2.0"], "pinned twice"),
    (["gevnt-websocket==0.10.1"], "close to 'gevent-websocket'"),
    (["Flask=>>1"], "is not a requirement"),
    (["Flask==="], "is not a version"),
    (["flask @ https://example.invalid/flask.tar.gz"], "URL"),
    ([], "no pins"),
])
def test_bad_pins_are_refused_with_the_fix(pins, says):
    with pytest.raises(StackError, match=says):
        from_args(pins, None)


@pytest.mark.parametrize("args", [
    ["-r", "/nonexistent/requirements.txt"],
    ["Flask==1.0", "flask==2.0"],
    ["Flask==1.1.4", "--python", "three"],
    ["-r", str(EXAMPLES / "today.txt"), "Flask==1.1.4"],
])
def test_cli_bad_input_is_one_line_and_exit_2(args):
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ";" in lines[0]


@pytest.mark.builds  # asks the registry
def test_a_release_that_does_not_exist_is_named_with_one_that_does():
    proc = _cli("Flask==9.9.9", "--work", str(CACHE / "stacks-test"))
    assert proc.returncode == 2
    assert "flask==9.9.9 does not exist on the registry" in proc.stderr
    assert "pin a release it has" in proc.stderr


def test_the_model_reproduces_the_seed_from_the_seed_pins():
    rows = prediction_grid("seed", {GWS: "0.9.5", "newrelic": "2.66.0.49"})
    got = {(a, f, *col): p.verdict for (a, f), cells in rows.items() for col, p in cells.items()}
    assert got == seed_table()


def test_predict_names_its_assumptions_and_prints_every_arm(capsys):
    request = from_args(["Flask==2.0.2"], None)
    started = time.monotonic()
    assert run_predict(request) == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert f"assumed {STACKS['today'][GWS]['version']}" in out and "newrelic is not pinned" in out
    assert out.count("agent o") == 4  # agent off/on x vanilla/patched
    assert elapsed < 1.0


def test_predict_on_a_release_without_patches_is_vanilla_only(capsys):
    run_predict(from_args(["gevent-websocket==0.9.4"], None))
    out = capsys.readouterr().out
    assert "no patch series for gevent-websocket 0.9.4" in out and "patched" not in out.split(
        "vanilla only")[1]


def test_predict_cli_builds_nothing_and_answers_in_under_a_second(tmp_path):
    started = time.monotonic()
    proc = _cli("-r", str(EXAMPLES / "2016-py27.txt"), "--predict", "--work", str(tmp_path))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "-oA" in proc.stdout and not any(tmp_path.iterdir())
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_wheel_tags_say_which_pythons_a_binary_release_supports():
    files = [{"filename": f} for f in (
        "gevent-1.2.2-cp27-cp27mu-manylinux1_x86_64.whl",
        "gevent-1.2.2-cp36-cp36m-manylinux1_x86_64.whl",
        "gevent-1.2.2-cp36-cp36m-win32.whl", "gevent-1.2.2.tar.gz")]
    assert wheel_pythons(files) == {"2.7", "3.6"}
    assert wheel_pythons([{"filename": "Flask-2.0.2-py3-none-any.whl"}]) is None
    abi3 = wheel_pythons([{"filename": "x-1-cp38-abi3-manylinux2014_x86_64.whl"}])
    assert "3.8" in abi3 and "3.13" in abi3 and "3.7" not in abi3


@pytest.mark.parametrize(("output", "says"), [
    ("error: Failed to build `markupsafe==1.0`\n  cause: The build backend returned an error\n"
     "ImportError: cannot import name 'Feature' from 'setuptools'\n",
     "markupsafe==1.0 has no wheel"),
    ("  x No solution found when resolving dependencies:\n  ╰─▶ Because flask==2.0.2 depends on "
     "werkzeug>=2.0 and you require werkzeug==1.0.1, we can conclude that your requirements "
     "are unsatisfiable.\n", "the pins conflict"),
])
def test_installer_output_becomes_one_line_with_the_fix(output, says):
    line = installer_failure(output, "resolving")
    assert says in line and "\n" not in line and ";" in line


@pytest.mark.builds  # asks the registry, resolves with uv
def test_a_failed_build_leaves_no_environment(tmp_path):
    request = Request(name="broken", requirements={})
    registry = Registry()
    plan = Plan(request=request, python_version=this_python(),
                python=sys.executable, era=None, why_python="test",
                pins={GWS: STACKS["today"][GWS]["version"]},
                gws_files=registry.check(GWS, STACKS["today"][GWS]["version"]),
                requirements=["flask==0.0.0"])
    with pytest.raises(StackError) as err:
        build(plan, tmp_path)
    assert "\n" not in str(err.value)
    assert [p.name for p in (tmp_path / "envs").iterdir()] == []


def test_a_user_stack_is_named_after_its_file_and_never_as_a_declared_stack(tmp_path):
    for declared in STACKS:
        assert stack_name(declared) == f"user-{declared}"
    (tmp_path / "my reqs.txt").write_text("gevent==21.8.0\n")
    name = from_args([], str(tmp_path / "my reqs.txt")).name
    assert name == "my-reqs"
    pins = from_args(["gevent==21.8.0", "Flask==2.0.2"], None).name
    # the name survives a cell's label and slug, as a declared stack's does
    cell = Cell(pins, True, False, True, False, True)
    assert Cell.parse(cell.label()) == cell and Cell.parse(cell.slug()) == cell


# -- the cells' side: tests/conftest.py checks the stack a pytest run claims ---------------


def _claim(*options):
    """pytest on the matrix's cells with ``options``: refused before any server starts."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/matrix/test_cells.py", "-x", "-q",
         "-p", "no:cacheprovider", "--no-agent", "--no-fixed", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("options", "says"), [
    (["--stack", "mine"], "--stack 'mine': not in pyproject.toml [tool.stacks] (deploy, seed, "
                          "today); name one, or give a user stack's pins with --pin NAME==VERSION"),
    (["--stack", "seed", "--pin", "Flask==1.0.4"],
     "--pin with --stack 'seed': that stack's pins are in pyproject.toml; give a user stack "
     "another name"),
    (["--stack", "mine", "--pin", "Flask"], "--pin 'Flask': expected NAME==VERSION"),
])
def test_a_user_stack_claim_without_pins_or_on_a_declared_stack_is_refused(options, says):
    proc = _claim(*options)
    assert proc.returncode != 0, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E ")]
    assert any(says in line for line in errors), proc.stdout[-2000:]
    assert "1 error" in proc.stdout and "passed" not in proc.stdout
