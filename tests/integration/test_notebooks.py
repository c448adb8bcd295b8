"""The notebooks run top to bottom on small data, as an operator would run them.

Each notebook is executed in a real Jupyter kernel (nbclient) from the notebooks folder,
with a cell after its ``parameters`` cell that shrinks the data. retrain.ipynb trains and
registers a version in a temporary models folder; evaluate.ipynb then loads that version.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
EVAL_DATA = Path(os.environ.get("HEALER_EVAL_DATA", REPO.parent / "shared" / "data" / "nab-dev"))


def run(name: str, **overrides: object) -> nbformat.NotebookNode:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    at = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    lines = [f"{key} = {value!r}" for key, value in overrides.items()]
    book.cells.insert(at + 1, new_code_cell("\n".join(lines)))
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return book


def text(book: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(out.get("text", ""))
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_the_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def retrained(models: Path) -> nbformat.NotebookNode:
    return run(
        "retrain.ipynb",
        SCENARIOS=["benign-day"],
        DURATION_S=5400,
        EVAL_SCENARIOS=["cpu-hog"],
        MODELS_DIR=str(models),
    )


def test_retrain_registers_a_version_and_compares_it(
    retrained: nbformat.NotebookNode, models: Path
) -> None:
    out = text(retrained)
    assert f"registered joint-1: {models / 'joint-1.card.json'}" in out
    assert "streaming alone" in out and "candidate joint-1" in out
    assert (models / "joint-1.skops").is_file()


def test_evaluate_scores_the_dev_set_and_the_model_in_service(
    retrained: nbformat.NotebookNode, models: Path
) -> None:
    present = (EVAL_DATA / "labels" / "combined_windows.json").is_file()
    if not present and os.environ.get("CI"):
        pytest.fail(f"no evaluation data at {EVAL_DATA} (HEALER_EVAL_DATA)")
    book = run(
        "evaluate.ipynb",
        EVAL_DATA=str(EVAL_DATA) if present else None,
        MAX_FILES=3,
        PLOTS=1,
        DURATION_S=3600,
        MODELS_DIR=str(models),
        MODEL_VERSION="joint-1",
    )
    out = text(book)
    assert "memory-leak: 1/1 faults found" in out
    if present:
        assert "standard" in out and "reward_low_FP_rate" in out
    images = [
        o for c in book.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert images or not present
