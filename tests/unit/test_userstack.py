"""A user's stack (tests/harness/userstack/): the input side.

What is read from a requirements file, what the model predicts from it, how bad
input is refused (one line, exit 2), and that a failed build leaves nothing behind.
The stacks themselves are served by tests/harness/stacklines.py (the `stacks` session).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tests.harness.cells import HANDLERS, STACKS, Cell, seed_table
from tests.harness.model import StackFacts, predict
from tests.harness.paths import CACHE, DATA, ROOT
from tests.harness.records import agrees
from tests.harness.userstack._env import build
from tests.harness.userstack._era import this_python
from tests.harness.userstack._errors import StackError, installer_failure
from tests.harness.userstack._predict import (
    model_versions,
    predict_cell,
    prediction_grid,
    run_predict,
)
from tests.harness.userstack._registry import Registry, wheel_pythons
from tests.harness.userstack._request import (
    GWS,
    Request,
    check_names,
    from_args,
    marker_environment,
    stack_name,
)
from tests.harness.userstack._resolve import (
    Plan,
    handler_hashes,
    layers_for_python,
    left_out,
    make_plan,
    plan_hashes,
    resolver_input,
    uv,
)
from tests.harness.userstack._run import layer_session_name, session_name

EXAMPLES = DATA / "stacks"


def _cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tests.harness.userstack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_reads_the_pins_that_matter_and_lists_the_others(tmp_path):
    base = tmp_path / "base.txt"
    base.write_text("greenlet==1.1.2\n")
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# a comment\n-r base.txt\n--index-url https://example.invalid/simple\n"
        "Flask==2.0.2 \\\n    --hash=sha256:00\nrequests==2.26.0  # HTTP\n"
        "gevent>=21\nsentry-sdk==1.5.0\nopentelemetry-api==1.8.0\n"
    )
    request = from_args([], str(req))
    assert request.name == "requirements"
    assert set(request.requirements) == {
        "greenlet",
        "flask",
        "gevent",
        "sentry-sdk",
        "opentelemetry-api",
    }
    assert request.exact("Flask") == "2.0.2" and request.exact("gevent") is None
    assert request.layers() == ["sentry-sdk", "opentelemetry-api"]
    assert "requests==2.26.0" in request.others["requests"]  # left for check_names
    assert any("--index-url" in i for i in request.ignored)


@pytest.mark.parametrize(
    ("pins", "says"),
    [
        (["Flask==1.0", "flask==2.0"], "pinned twice"),
        (["flask>=3", "Flask==2.0.2"], "pinned to 2.0.2, which another line excludes"),
        (["Flask=>>1"], "is not a requirement"),
        (["Flask==="], "is not a version"),
        (["flask @ https://example.invalid/flask.tar.gz"], "URL"),
        ([], "no pins"),
    ],
)
def test_bad_pins_are_refused_with_the_fix(pins, says):
    with pytest.raises(StackError, match=says):
        from_args(pins, None)


@pytest.mark.parametrize(
    "args",
    [
        ["-r", "/nonexistent/requirements.txt"],
        ["Flask==1.0", "flask==2.0"],
        ["Flask==1.1.4", "--python", "three"],
        ["-r", str(EXAMPLES / "today.txt"), "Flask==1.1.4"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args):
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ";" in lines[0]


# -- requirements files as pip-compile and `uv pip compile` write them --------------------


def test_a_uv_compiled_file_gives_every_pin_with_its_hashes():
    """tests/data/stacks/today-sentry.txt: `uv pip compile --generate-hashes` output, with
    backslash continuations and one- and multi-line `# via` comments."""
    path = EXAMPLES / "today-sentry.txt"
    text = path.read_text()
    request = from_args([], str(path))
    named = {line.split("==")[0] for line in text.splitlines() if line[:1].isalpha()}
    assert set(request.requirements) | set(request.others) == named
    assert request.ignored == [] and request.conditional == []
    assert request.exact("gevent") == "26.9.0" and request.exact("sentry-sdk") == "2.75.0"
    assert "sentry-sdk" in request.layers()
    # the project's own digest of the handler's sdist is among the file's
    assert f"sha256:{STACKS['today'][GWS]['sha256']}" in request.hashes[GWS]["0.10.1"]
    assert len(request.hashes[GWS]["0.10.1"]) == text.split(f"{GWS}==0.10.1")[1].split("# via")[
        0
    ].count("--hash=sha256:")
    # a pin the cells do not decide keeps its hashes and where it was (its first line)
    line = 1 + text.splitlines().index("blinker==1.9.0 \\")
    assert request.others["blinker"] == f"blinker==1.9.0 (today-sentry.txt:{line})"
    assert len(request.hashes["blinker"]["1.9.0"]) == 2


@pytest.mark.parametrize(
    ("python", "chosen"),
    [
        ("3.7", {"click": "8.1.8", "itsdangerous": "2.1.2", "markupsafe": "2.1.5"}),
        ("3.9", {"click": "8.1.8", "itsdangerous": "2.2.0", "markupsafe": "3.0.4"}),
        ("3.12", {"click": "8.5.1", "itsdangerous": "2.2.0", "markupsafe": "3.0.4"}),
    ],
)
def test_markers_that_depend_on_the_python_are_read_for_the_chosen_one(python, chosen):
    """tests/data/stacks/2021-universal.txt: `uv pip compile --universal` output."""
    request = from_args([], str(EXAMPLES / "2021-universal.txt"))
    # before the Python is known, only the pins that hold on every Python count
    assert not set(chosen) & set(request.requirements)
    assert request.exact("gevent") == "21.8.0" and request.exact("jinja2") == "3.1.6"
    windows = [i for i in request.ignored if "win32" in i]
    assert windows and all("marker is false for CPython on Linux" in i for i in windows)
    assert not any("win32" in i for i in request.others.values())
    done = request.for_python(python)
    assert {n: done.exact(n) for n in chosen} == chosen
    assert done.conditional == [] and done.python == python
    assert all("marker" not in str(done.requirements[n]) for n in chosen)  # evaluated
    false = [i for i in done.ignored if f"marker is false for Python {python}" in i]
    assert any(i.startswith("click==") for i in false)


def test_the_marker_environment_is_cpython_on_linux():
    env = marker_environment("2.7")
    assert env["sys_platform"] == "linux2" and env["python_full_version"] == "2.7.0"
    assert marker_environment("3.11", "3.11.7")["python_full_version"] == "3.11.7"
    request = from_args(
        [
            "greenlet==0.4.17 ; platform_python_implementation == 'CPython'",
            "pywin32==305 ; sys_platform == 'win32'",
            "gevent==1.2.2 ; sys_platform == 'linux2'",
        ],
        None,
    )
    assert request.exact("greenlet") == "0.4.17" and "pywin32" not in request.others
    assert [ln.text for ln in request.conditional] == ["gevent==1.2.2 ; sys_platform == 'linux2'"]
    assert request.for_python("2.7").exact("gevent") == "1.2.2"
    assert request.for_python("3.8").exact("gevent") is None


def test_extras_count_as_the_package_and_survive_a_second_pin():
    request = from_args(["sentry-sdk[flask]==2.75.0", "flask[async]>=2", "Flask==2.0.2"], None)
    assert request.exact("sentry-sdk") == "2.75.0" and request.layers() == ["sentry-sdk"]
    assert request.requirements["sentry-sdk"].extras == {"flask"}
    assert request.exact("flask") == "2.0.2" and request.requirements["flask"].extras == {"async"}


def test_includes_are_relative_to_the_file_naming_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("-c ../constraints.txt\ngevent\n")
    (tmp_path / "constraints.txt").write_text(
        "gevent==21.8.0\nsentry-sdk==1.5.0\nrequests==2.26.0\n-r more-constraints.txt\n"
    )
    (tmp_path / "more-constraints.txt").write_text("Flask==2.0.2\n")
    (tmp_path / "requirements.txt").write_text("-rsub/base.txt\n--requirement=sub/other.txt\n")
    (tmp_path / "sub" / "other.txt").write_text("newrelic==7.2.4.171\n")
    request = from_args([], str(tmp_path / "requirements.txt"))
    # a constraint binds what the server installs anyway: gevent, and Flask (a -r inside a
    # -c file is constraints too, as in pip); not a layer the files do not require
    assert request.pinned() == {"gevent": "21.8.0", "newrelic": "7.2.4.171", "flask": "2.0.2"}
    assert request.others["sentry-sdk"] == "sentry-sdk==1.5.0 (constraints.txt:2, a constraint)"
    assert "requests" in request.others


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (
            {"a.txt": "-r b.txt\n", "b.txt": "-c a.txt\n"},
            "a.txt -> b.txt -> a.txt: the files include each other (a -r/-c cycle); remove one",
        ),
        ({"a.txt": "-r a.txt\n"}, "a.txt -> a.txt: the files include each other"),
        (
            {"a.txt": "Flask==2.0.2\n-r sub/missing.txt\n"},
            "sub/missing.txt (named by a.txt): no such file; fix the path (an include is relative",
        ),
    ],
)
def test_a_bad_include_is_one_line_and_exit_2(tmp_path, files, says):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = _cli("-r", str(tmp_path / "a.txt"), "--predict")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_options_and_editables_are_listed_with_the_reason_never_dropped(tmp_path):
    lines = [
        "-i https://pypi.example.invalid/simple",
        "--extra-index-url=https://x.invalid",
        "--find-links ./wheels",
        "--trusted-host x.invalid",
        "--no-binary :all:",
        "--require-hashes",
        "-e ./our-service",
        "--editable git+https://x.invalid/r#egg=r",
        "--frobnicate",
        "gevent==21.8.0 --config-settings=x=1",
    ]
    (tmp_path / "r.txt").write_text("\n".join(lines) + "\n")
    request = from_args([], str(tmp_path / "r.txt"))
    assert request.exact("gevent") == "21.8.0"
    assert len(request.ignored) == len(lines)
    reasons = dict(zip(lines, request.ignored, strict=True))
    for line in lines[:4]:
        assert "an index option" in reasons[line]
    assert "an install option" in reasons["--no-binary :all:"]
    assert "checked at install" in reasons["--require-hashes"]
    assert all("editable install" in reasons[line] for line in lines[6:8])
    assert "an option the stack's build does not use" in reasons["--frobnicate"]
    assert reasons[lines[-1]].startswith("--config-settings=x=1 (r.txt:10): an install option")


def _plan(request: Request, pins: dict[str, str], python: str = "3.11") -> Plan:
    return Plan(
        request=request,
        python_version=python,
        python=sys.executable,
        era=None,
        why_python="test",
        pins=pins,
    )


def test_each_pin_installed_carries_the_file_hash_or_says_why_not(tmp_path):
    (tmp_path / "r.txt").write_text(
        "flask==2.0.2 --hash=sha256:aa --hash=sha256:bb\ngevent==21.8.0\n"
        f"{GWS}==0.10.1 --hash=sha256:cc\nzope.interface==5.4.0 --hash=sha256:dd\n"
        "blinker==1.4 --hash=sha256:ee\n"
    )
    request = from_args([], str(tmp_path / "r.txt")).for_python("3.9")
    plan = _plan(
        request,
        {
            GWS: "0.10.1",
            "flask": "2.0.2",
            "gevent": "21.8.0",
            "zope-interface": "5.4.0",
            "zope-event": "4.5.0",
            "greenlet": "1.1.2",
        },
    )
    plan_hashes(plan)
    assert plan.hashes == {
        "flask": ("sha256:aa", "sha256:bb"),
        GWS: ("sha256:cc",),
        "zope-interface": ("sha256:dd",),
    }
    why = {line.split(":")[0]: line for line in plan.unverified}
    assert set(why) == {"gevent==21.8.0", "zope-event==4.5.0", "greenlet==1.1.2"}
    assert "the file gives no hash for it" in why["gevent==21.8.0"]
    assert "not in the file; filled in by the resolver" in why["zope-event==4.5.0"]
    plan = _plan(request, {"zope-interface": "5.5.0"})
    plan_hashes(plan)
    assert plan.hashes == {} and "the file pins 5.4.0" in plan.unverified[0]
    plan = _plan(from_args(["flask==2.0.2"], None), {"flask": "2.0.2"})
    plan_hashes(plan)
    assert plan.hashes == {} and plan.unverified == []  # no hashes: nothing claimed


def test_uv_is_the_one_named_by_UV_as_nox_does(monkeypatch, tmp_path):
    real = uv()
    monkeypatch.setenv("PATH", str(tmp_path))  # no uv on PATH: nox called by its path
    monkeypatch.setenv("UV", real)
    assert uv() == real
    monkeypatch.setenv("UV", str(tmp_path / "no-uv"))
    with pytest.raises(StackError, match=r"uv is not found \(UV=.*no-uv' names no program\)"):
        uv()


# -- the registry's side: these ask it --------------------------------------------------


@pytest.mark.builds
@pytest.mark.parametrize(
    ("pin", "says"),
    [
        (
            "gevnet==26.9.0",
            "'gevnet' is not on the registry; did you mean gevent? fix the spelling",
        ),
        ("gevnt-websocket==0.10.1", "did you mean gevent-websocket?"),
        ("sentry-skd==2.75.0", "did you mean sentry-sdk?"),
    ],
)
def test_a_misspelt_pin_is_an_error_naming_the_package(pin, says):
    request = from_args(["Flask==3.1.3", pin], None)
    with pytest.raises(StackError, match=re.escape(says)):
        check_names(request, Registry())


@pytest.mark.builds
def test_a_name_off_the_registry_is_ignored_as_private_one_on_it_as_unpinned():
    private = "mycorp-internal-auth-client-" + "q7" * 4  # no such project
    request = from_args(["Flask==3.1.3", f"{private}==1.2.0", "requests==2.26.0"], None)
    check_names(request, Registry())
    assert request.others == {}
    said = {line.split("==")[0]: line for line in request.ignored}
    assert "not on the registry (a private package from another index?)" in said[private]
    assert "not a package the cells pin" in said["requests"]


@pytest.mark.builds
def test_cli_misspelt_pin_is_one_line_exit_2_even_with_predict(tmp_path):
    (tmp_path / "requirements.txt").write_text("Flask==3.1.3\ngevnet==26.9.0\n")
    proc = _cli("-r", str(tmp_path / "requirements.txt"), "--predict")
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: gevnet==26.9.0 (requirements.txt:2): 'gevnet' is not on the "
        "registry; did you mean gevent? fix the spelling\n"
    )


@pytest.mark.builds
def test_the_python_is_chosen_then_the_markers_are_read_for_it(tmp_path):
    """A pin whose marker depends on the Python is read once the Python is chosen from
    the others: gevent 21.8.0 has wheels up to 3.10, so not this 3.11; 3.9 and 3.10 are
    installed here, and the plan is resolved (no environment is built)."""
    request = from_args(
        [
            "gevent==21.8.0",
            "Flask==2.0.2",
            "markupsafe==2.1.5 ; python_version < '3.10'",
            "markupsafe==3.0.4 ; python_version >= '3.10'",
        ],
        None,
    )
    plan = make_plan(request, None)
    expect = "2.1.5" if plan.python_version in ("3.8", "3.9") else "3.0.4"
    assert plan.python_version != this_python() and plan.pins["markupsafe"] == expect
    assert plan.request.exact("markupsafe") == expect and plan.request.python == (
        plan.python_version
    )


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


@pytest.mark.parametrize(("release", "unproven"), [("2.75.0", False), ("1.5.0", True)])
def test_predict_says_a_layer_release_no_session_ran_is_unproven(capsys, release, unproven):
    run_predict(from_args([f"sentry-sdk=={release}", "Flask==2.0.2"], None))
    out = capsys.readouterr().out
    assert "model: layer sentry" in out
    said = [ln for ln in out.splitlines() if "unproven until `nox -s stack` serves it" in ln]
    assert bool(said) == unproven, out
    if unproven:
        assert "sentry-sdk 2.75.0 (today), sentry-sdk 1.45.1 (seed)" in said[0]


def test_predict_names_its_assumptions_and_prints_every_arm(capsys):
    request = from_args(["Flask==2.0.2"], None)
    assert run_predict(request) == 0
    out = capsys.readouterr().out
    assert f"assumed {STACKS['today'][GWS]['version']}" in out and "newrelic is not pinned" in out
    assert out.count("agent o") == 4  # agent off/on x vanilla/patched


def test_predict_on_a_release_without_patches_is_vanilla_only(capsys):
    run_predict(from_args(["gevent-websocket==0.9.4"], None))
    out = capsys.readouterr().out
    assert (
        "no patch series for gevent-websocket 0.9.4" in out
        and "patched" not in out.split("vanilla only")[1]
    )


def test_predict_cli_builds_nothing(tmp_path):
    proc = _cli("-r", str(EXAMPLES / "2016-py27.txt"), "--predict", "--work", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "-oA" in proc.stdout and not any(tmp_path.iterdir())


def test_wheel_tags_say_which_pythons_a_binary_release_supports():
    files = [
        {"filename": f}
        for f in (
            "gevent-1.2.2-cp27-cp27mu-manylinux1_x86_64.whl",
            "gevent-1.2.2-cp36-cp36m-manylinux1_x86_64.whl",
            "gevent-1.2.2-cp36-cp36m-win32.whl",
            "gevent-1.2.2.tar.gz",
        )
    ]
    assert wheel_pythons(files) == {"2.7", "3.6"}
    assert wheel_pythons([{"filename": "Flask-2.0.2-py3-none-any.whl"}]) is None
    abi3 = wheel_pythons([{"filename": "x-1-cp38-abi3-manylinux2014_x86_64.whl"}])
    assert "3.8" in abi3 and "3.13" in abi3 and "3.7" not in abi3


@pytest.mark.parametrize(
    ("output", "says"),
    [
        (
            "error: Failed to build `markupsafe==1.0`\n"
            "  cause: The build backend returned an error\n"
            "ImportError: cannot import name 'Feature' from 'setuptools'\n",
            "markupsafe==1.0 has no wheel",
        ),
        (
            "error: Failed to download `blinker==1.9.0`\n"
            "  cause: Hash mismatch for `blinker==1.9.0`\n\n"
            "         Expected:\n           sha256:00\n\n"
            "         Computed:\n           sha256:ba0e\n",
            "blinker==1.9.0 downloaded with sha256:ba0e, none of the requirements file's hashes "
            "(sha256:00)",
        ),
        (
            "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. "
            "If you have updated the package versions, please update the hashes.\n"
            "    Flask==0.11.1 from https://files.pythonhosted.org/packages/63/2b/x/"
            "Flask-0.11.1-py2.py3-none-any.whl#sha256="
            "a4f9 (from -r one.txt (line 1)):\n        Expected sha256 0000\n"
            "             or sha256 0001\n             Got        a4f9\n",
            "Flask==0.11.1 downloaded with sha256:a4f9, none of the requirements file's hashes "
            "(sha256:0000, sha256:0001)",
        ),
        (
            "  x No solution found when resolving dependencies:\n"
            "  ╰─▶ Because flask==2.0.2 depends on "
            "werkzeug>=2.0 and you require werkzeug==1.0.1, we can conclude that your requirements "
            "are unsatisfiable.\n",
            "the pins conflict",
        ),
    ],
)
def test_installer_output_becomes_one_line_with_the_fix(output, says):
    line = installer_failure(output, "resolving")
    assert says in line and "\n" not in line and ";" in line


@pytest.mark.builds  # asks the registry, resolves with uv
def test_a_failed_build_leaves_no_environment(tmp_path):
    request = Request(name="broken", requirements={})
    registry = Registry()
    plan = Plan(
        request=request,
        python_version=this_python(),
        python=sys.executable,
        era=None,
        why_python="test",
        pins={GWS: STACKS["today"][GWS]["version"]},
        gws_files=registry.check(GWS, STACKS["today"][GWS]["version"]),
        requirements=["flask==0.0.0"],
    )
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
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/matrix/test_cells.py",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-agent",
            "--no-fixed",
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            ["--stack", "mine"],
            "--stack 'mine': not in pyproject.toml [tool.stacks] (deploy, seed, "
            "today); name one, or give a user stack's pins with --pin NAME==VERSION",
        ),
        (
            ["--stack", "seed", "--pin", "Flask==1.0.4"],
            "--pin with --stack 'seed': that stack's pins are in pyproject.toml; give a user stack "
            "another name",
        ),
        (["--stack", "mine", "--pin", "Flask"], "--pin 'Flask': expected NAME==VERSION"),
    ],
)
def test_a_user_stack_claim_without_pins_or_on_a_declared_stack_is_refused(options, says):
    proc = _claim(*options)
    assert proc.returncode != 0, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E ")]
    assert any(says in line for line in errors), proc.stdout[-2000:]
    assert "1 error" in proc.stdout and "passed" not in proc.stdout


SENTRY_TODAY = ["gevent==26.9.0", "Werkzeug==3.1.9", f"{GWS}==0.10.1", "sentry-sdk==2.75.0"]


@pytest.mark.parametrize(
    ("gevent", "vanilla_tcp"),
    [("26.9.0", "held"), ("20.9.0", "closed")],  # either side of the proven gevent bound
)
def test_predict_prints_the_grid_of_each_layer_the_pins_set_up(capsys, gevent, vanilla_tcp):
    pins = [p if not p.startswith("gevent==") else f"gevent=={gevent}" for p in SENTRY_TODAY]
    assert run_predict(from_args(pins, None)) == 0
    out = capsys.readouterr().out
    grid = out.split("model: layer sentry (sentry-sdk==2.75.0)")[1]
    rows = {line.split()[0]: line.split()[1:] for line in grid.splitlines()[3:5]}
    assert set(rows) == {"vanilla", "patched"}, grid
    # four cells a row, each "verdict layer_finished server_closed_tcp causes"
    assert rows["vanilla"].count(vanilla_tcp) == 4 and rows["patched"].count("closed") == 4
    assert ("sentry reads the request body" in grid) == (vanilla_tcp == "held")


class _Files:
    """What the registry says of one release: its files' Requires-Python."""

    def __init__(self, requires_python):
        self.requires_python = requires_python

    def check(self, name, version):
        return [{"requires_python": self.requires_python, "packagetype": "sdist"}]


@pytest.mark.parametrize(("requires", "runs"), [(">=3.6", False), (">=2.7", True), (None, True)])
def test_a_layer_whose_release_does_not_admit_the_stacks_python_cannot_run(requires, runs):
    request = from_args(["Flask==0.11.1", "sentry-sdk==2.75.0"], None)
    plan = Plan(request, "2.7", "python2.7", None, "asked for")
    assert layers_for_python(plan, _Files(requires)) == (["sentry"] if runs else [])
    if not runs:
        assert plan.cannot_run == {
            "sentry": "sentry-sdk==2.75.0 requires Python >=3.6; the stack runs on 2.7"
        }


def test_a_served_layer_is_resolved_with_what_its_docs_install_the_others_left_out():
    request = from_args(
        ["Flask==3.1.3", "sentry-sdk==2.75.0", "ddtrace==4.16.0", "opentelemetry-api==1.45.1"],
        None,
    )
    assert request.served_layers() == {"sentry": "sentry-sdk", "ddtrace": "ddtrace"}
    reqs, _ = resolver_input(request, ["sentry"])
    assert "sentry-sdk[flask]==2.75.0" in reqs  # the pin, with the extra its docs name
    assert not any(r.startswith("ddtrace") for r in reqs)
    assert "opentelemetry-api==1.45.1" in reqs  # a served layer may run on it
    assert left_out(request, []) == {"sentry-sdk", "ddtrace", "opentelemetry-api"}


# -- another websocket handler: pins naming gevent-ws or flask-sock ------------------------


@pytest.mark.parametrize(
    ("pins", "serves", "left"),
    [
        (["Flask==3.1.3", "flask-sock==0.7.0"], "flask-sock", set()),
        (["gevent-ws==2.1.0"], "gevent-ws", set()),
        (["Flask==3.1.3"], GWS, set()),
        # gevent-websocket named too: it serves, the other handler is not installed
        (["gevent-websocket==0.10.1", "flask-sock==0.7.0"], GWS, {"flask-sock"}),
    ],
)
def test_the_handler_the_pins_name_serves_the_stack(pins, serves, left):
    request = from_args(pins, None)
    assert request.handler() == serves
    assert left_out(request, []) == left
    reqs, _ = resolver_input(request, [])
    # the serving handler is resolved with the rest (gevent-websocket is built apart)
    names = {Requirement(r).name for r in reqs}
    assert (serves in names) == (serves != GWS) and not names & left


def test_another_handler_is_one_build_predicted_from_its_model_facts():
    versions = {"flask-sock": "0.7.0", "newrelic": "14.1.0"}
    rows = prediction_grid("fs", versions)
    assert list(rows) == [(False, False), (True, False)]  # agent off/on, no patched build
    facts = StackFacts.from_versions(versions, "flask-sock")
    for (agent, fixed), cells in rows.items():
        for col, p in cells.items():
            cell = Cell("fs", agent, fixed, *col, handler="flask-sock")
            assert p == predict(cell, facts), cell.label()
    # flask-sock drops the streaming view's iterator: those cells fail, the others pass
    assert {col: p.verdict for col, p in rows[(False, False)].items()} == {
        col: "-" if col[2] else "+" for col in rows[(False, False)]
    }


@pytest.mark.parametrize(("release", "unproven"), [("0.7.0", False), ("0.6.0", True)])
def test_predict_says_a_handler_release_no_session_ran_is_unproven(capsys, release, unproven):
    assert run_predict(from_args([f"flask-sock=={release}", "Flask==3.1.3"], None)) == 0
    out = capsys.readouterr().out
    assert f"(flask-sock {release}, newrelic" in out
    assert "agent on · flask-sock" in out and "· vanilla" not in out and "· patched" not in out
    said = [ln for ln in out.splitlines() if "unproven" in ln]
    assert bool(said) == unproven, out
    if unproven:
        assert f"at 0.7.0; at {release} they are the model's assumption" in said[0]


def test_a_handlers_pins_are_checked_against_pyprojects_sha256():
    request = from_args(["flask-sock==0.7.0"], None)
    plan = Plan(request, "3.11", sys.executable, None, "", handler="flask-sock")
    plan.pins = {
        "flask-sock": "0.7.0",
        "simple-websocket": "1.1.0",
        "wsproto": "1.3.2",
        "h11": "0.16.0",
        "flask": "3.1.3",
    }
    handler_hashes(plan, Registry())  # pyproject's releases: the registry is not asked
    pinned = HANDLERS["flask-sock"]
    assert plan.handler_hashes["flask-sock"] == (f"sha256:{pinned['sha256']}",)
    assert set(plan.handler_hashes) == {"flask-sock", "simple-websocket", "wsproto", "h11"}
    assert all("pyproject.toml's" in line for line in plan.handler_checked)


def test_user_stack_sessions_on_a_handler_are_named_as_the_handler_sessions():
    assert (
        session_name("s", True, False, "flask-sock") == "stack(s, handler=flask-sock, agent=True)"
    )
    assert layer_session_name("s", "sentry", False, "gevent-ws") == (
        "stack(s, handler=gevent-ws, layer=sentry)"
    )
    assert session_name("s", True, False) == "stack(s, agent=True, fixed=False)"


FLASK_SOCK_STACK = EXAMPLES / "today-flask-sock.txt"


# A real run: today's pins served by flask-sock (the environment is reused by a second run);
# the results go to a temporary directory, not beside the sessions'.
@pytest.mark.stacks
def test_a_stack_pinning_flask_sock_runs_its_cells_on_flask_sock(tmp_path):
    proc = _cli("-r", str(FLASK_SOCK_STACK), "--results", str(tmp_path), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    request = from_args([], str(FLASK_SOCK_STACK))
    versions, _ = model_versions(request)
    docs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("stack-*.json"))]
    assert sorted(d["session"] for d in docs) == [
        session_name(request.name, agent, False, "flask-sock") for agent in (False, True)
    ]
    records = [r for d in docs for r in d["cells"]]
    assert len(records) == 16, [d["session"] for d in docs]
    for record in records:
        cell = Cell(**record["cell"])
        # served by flask-sock: the readiness line's handler (name, release) and the
        # websocket class every upgrade gave a view, gevent-websocket not installed
        assert cell.handler == "flask-sock" and record["facts"]["handler_label"] == "flask-sock"
        assert record["controls"]["the handler in use is flask-sock"], cell.label()
        assert record["versions"]["gevent-websocket"] is None, cell.label()
        assert all(record["controls"].values()), (cell.label(), record["controls"])
        # the model's prediction from the pins alone, which every client's observation matches
        expected = json.loads(json.dumps(predict_cell(cell, versions).as_dict()))
        assert record["expected"] == expected, cell.label()
        for seen in record["observed"]:
            assert agrees(seen, expected), (cell.label(), seen["client"], seen, expected)
