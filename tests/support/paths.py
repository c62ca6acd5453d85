"""Where the repository is, for tests that read its files (README, docs/, infra/, .ci/) or run from it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
