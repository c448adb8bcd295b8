"""The labelled evaluation series, for the detection tests that need real data.

Read from ``HEALER_EVAL_DATA`` (default ``../shared/data/nab-dev`` beside the
repository). Where it is absent the tests that need it skip and say so, except in CI
(``CI=true``), where a missing folder is a failure: the scores must be checked there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EVAL_DATA = Path(os.environ.get("HEALER_EVAL_DATA", REPO.parent / "shared" / "data" / "nab-dev"))
REFERENCE = REPO.parent / "shared" / "tools" / "nab_score.py"


def require(*paths: Path) -> None:
    """Skip the test when a path is missing; fail it in CI."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    message = f"missing {', '.join(missing)} (HEALER_EVAL_DATA names the evaluation data)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must have it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def eval_data() -> Path:
    """The evaluation data folder: ``data/<category>/*.csv`` and ``labels/``."""
    require(EVAL_DATA / "labels" / "combined_windows.json")
    return EVAL_DATA


@pytest.fixture
def reference_scorer(eval_data: Path) -> Path:
    """The shared NAB scorer that the project's own rules are checked against."""
    require(REFERENCE)
    return REFERENCE
