"""Finding a CPython X.Y (tests/harness/pythons.py): where it looks, what it refuses."""

from __future__ import annotations

import sys

import pytest

from tests.harness.pythons import HOW_TO_GET_ONE, MissingPython, find_python, how_to_get


@pytest.mark.parametrize(("version", "pyenv"), [("2.7", "2.7.18"), ("3.5", "3.5")])
def test_find_python_says_where_it_looked_and_how_to_get_one(monkeypatch, tmp_path, version, pyenv):
    var = "PYTHON" + version.replace(".", "")
    monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    with pytest.raises(MissingPython) as err:
        find_python(version)
    message = str(err.value)
    assert "\n" not in message
    assert f"no CPython {version} found" in err.value.what and str(tmp_path / "pyenv") in message
    assert err.value.how == how_to_get(version) and message.endswith(f"; {err.value.how}")
    assert f"pyenv install {pyenv}`" in message and f"{var}=" in message


def test_find_python_does_not_take_3_10_for_3_1(monkeypatch, tmp_path):
    fake = tmp_path / "pyenv" / "versions" / "3.10.13" / "bin"
    fake.mkdir(parents=True)
    (fake / "python3.1").symlink_to(sys.executable)
    monkeypatch.delenv("PYTHON31", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    with pytest.raises(MissingPython, match="no CPython 3.1 found"):
        find_python("3.1")


def test_find_python_rejects_a_wrong_explicit_setting(monkeypatch):
    """An explicit PYTHON27 that is not 2.7 is an error, not a reason to look elsewhere."""
    monkeypatch.setenv("PYTHON27", sys.executable)
    with pytest.raises(MissingPython, match="PYTHON27=") as err:
        find_python("2.7")
    assert err.value.how == HOW_TO_GET_ONE
