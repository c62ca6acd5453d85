"""The size guards `make lint` runs can fail: .ci/sizes.py refuses a function over 60 lines and a file
over its limit (400 lines in shared/, 800 in tests/)."""

from __future__ import annotations

import subprocess
import sys

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
