"""The guards `make lint` runs can fail: .ci/function_length.py refuses a function over 60 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "function_length.py"


def function_of(lines: int) -> str:
    """A function `lines` long, from its `def` to its last line."""
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 2))
    return f"def long_one():\n{body}    return 0\n"


@pytest.mark.parametrize(("lines", "fails"), [(60, False), (61, True)], ids=["60-lines", "61-lines"])
def test_function_length_limit(tmp_path, lines, fails):
    (tmp_path / "module.py").write_text(function_of(lines))

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )

    assert (done.returncode == 1) is fails
    assert ("long_one is 61 lines long" in done.stdout) is fails
