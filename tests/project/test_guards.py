"""The guards `make lint` runs can fail: .ci/sizes.py refuses a function over 60 lines and a file over its
limit (400 lines in shared/, 800 in tests/); import-linter refuses a private name imported across modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / ".ci" / "sizes.py"


def function_of(lines: int) -> str:
    """A function `lines` long, from its `def` to its last line."""
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 2))
    return f"def long_one():\n{body}    return 0\n"


def sizes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("lines", "fails"), [(60, False), (61, True)], ids=["60-lines", "61-lines"])
def test_function_length_limit(tmp_path, lines, fails):
    (tmp_path / "module.py").write_text(function_of(lines))

    done = sizes(str(tmp_path), "--max", "60")

    assert (done.returncode == 1) is fails
    assert ("long_one is 61 lines long" in done.stdout) is fails


@pytest.mark.parametrize(("lines", "fails"), [(400, False), (401, True)], ids=["400-lines", "401-lines"])
def test_file_length_limit(tmp_path, lines, fails):
    (tmp_path / "module.py").write_text("".join(f"x{i} = {i}\n" for i in range(lines)))

    done = sizes(str(tmp_path), "--max", "60", "--file-max", "400")

    assert (done.returncode == 1) is fails
    assert ("module.py has 401 lines (at most 400)" in done.stdout) is fails


def test_the_lint_target_runs_the_size_guard_and_import_linter():
    makefile = (REPO / "Makefile").read_text()
    assert ".ci/sizes.py shared function_app.py --max 60 --file-max 400" in makefile
    assert ".ci/sizes.py tests --max 0 --file-max 800" in makefile
    assert "$(VENV)/bin/lint-imports" in makefile


def test_import_linter_refuses_a_private_name_imported_from_another_module(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def _hidden():\n    return 1\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import _hidden\n\n    return _hidden()\n")
    config = tmp_path / ".importlinter"
    config.write_text(
        "[importlinter]\nroot_package = pkg\ncontract_types =\n"
        "    private_names: lint.private_names.PrivateNamesContract\n\n"
        "[importlinter:contract:private]\nname = private\ntype = private_names\ncontainers =\n    pkg\n"
    )
    repo = REPO
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": f"{tmp_path}:{repo}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [str(lint_imports), "--config", str(config), "--no-cache"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pkg.b imports _hidden from pkg.a" in done.stdout
