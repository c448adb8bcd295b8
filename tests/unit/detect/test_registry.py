"""Model versions on disk: saved with skops and a card, loaded only after checks."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from histories import history

from healer.config import DetectorSettings
from healer.detect import registry
from healer.detect.combined import CombinedDetector, build_detector
from healer.detect.features import window_features
from healer.detect.model import JointModel
from healer.detect.shaped import ShapedDetector
from healer.detect.streaming import StreamingDetector
from healer.detect.train import History, train
from healer.errors import DetectError, ModelMismatch

NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    train(History(history(3, seed=1), source="synthetic"), now=NOW, models_dir=folder)
    return folder


@pytest.fixture
def models(saved: Path, tmp_path: Path) -> Path:
    """A copy each test may damage."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in saved.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def card(models: Path, version: str = "joint-1") -> dict[str, object]:
    loaded: dict[str, object] = json.loads((models / f"{version}.card.json").read_text())
    return loaded


def test_a_saved_version_loads_and_scores_as_before(models: Path) -> None:
    loaded = registry.load("joint-1", models_dir=models)
    fresh = train(History(history(3, seed=1)), now=NOW).model
    features = window_features(history(1, seed=9), fresh.spec).reshape(-1, len(fresh.features_))
    np.testing.assert_array_equal(
        loaded.model.anomaly_score(features), fresh.anomaly_score(features)
    )
    assert registry.registered(models) == [{"version": "joint-1", "registered": NOW.isoformat()}]


def test_the_card_describes_data_features_parameters_scores_and_libraries(models: Path) -> None:
    c = card(models)
    assert c["features"] == list(JointModel().spec.names)
    assert c["artifact"] == "joint-1.skops" and len(str(c["sha256"])) == 64
    assert c["training"]["sources"] == ["synthetic"]  # type: ignore[index]
    assert c["training"]["from"] == "2026-03-02T11:00:00+00:00"  # type: ignore[index]
    assert c["parameters"]["random_state"] == 0  # type: ignore[index]
    assert {"candidate", "in_service"} <= set(c["scores"])  # type: ignore[arg-type]
    assert {"numpy", "scikit-learn", "skops", "python"} <= set(c["libraries"])  # type: ignore[arg-type]


def test_versions_count_up_and_never_overwrite(models: Path) -> None:
    assert registry.next_version(models) == "joint-2"
    model = registry.load("joint-1", models_dir=models).model
    with pytest.raises(DetectError, match="already exists"):
        registry.save(model, models_dir=models, version="joint-1", card={})


def test_a_tampered_artifact_is_refused(models: Path) -> None:
    artifact = models / "joint-1.skops"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(
        ModelMismatch, match=r"joint-1\.skops: sha256 differs from .*joint-1\.card\.json"
    ):
        registry.load("joint-1", models_dir=models)


def test_a_card_whose_features_disagree_is_refused(models: Path) -> None:
    c = card(models)
    c["features"] = [*c["features"], "change_60s_vs_900s:disk"]  # type: ignore[misc]
    (models / "joint-1.card.json").write_text(json.dumps(c))
    with pytest.raises(ModelMismatch, match=r"joint-1\.card\.json: the card's features disagree"):
        registry.load("joint-1", models_dir=models)


def test_a_model_computing_other_features_is_refused(models: Path) -> None:
    model = registry.load("joint-1", models_dir=models).model
    model.features_ = model.features_[:-1]
    registry.save(model, models_dir=models, version="old", card={})
    with pytest.raises(ModelMismatch, match=r"old\.skops: its features are not the ones"):
        registry.load("old", models_dir=models)


def test_a_pickle_file_is_refused_by_name(models: Path) -> None:
    (models / "joint-1.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DetectError, match=r"joint-1\.pkl: refusing a pickle file"):
        registry.load("joint-1.pkl", models_dir=models)


def test_a_pickle_file_is_refused_by_content_whatever_its_name(models: Path) -> None:
    model = registry.load("joint-1", models_dir=models).model
    artifact = models / "joint-1.skops"
    artifact.write_bytes(pickle.dumps(model))
    c = card(models)
    c["sha256"] = registry.sha256_of(artifact)  # even with a card that matches it
    (models / "joint-1.card.json").write_text(json.dumps(c))
    with pytest.raises(DetectError, match=r"joint-1\.skops: refusing a pickle file"):
        registry.load("joint-1", models_dir=models)


def test_a_card_naming_a_pickle_artifact_is_refused(models: Path) -> None:
    c = card(models)
    c["artifact"] = "joint-1.joblib"
    (models / "joint-1.card.json").write_text(json.dumps(c))
    with pytest.raises(DetectError, match=r"joint-1\.joblib: refusing a pickle file"):
        registry.load("joint-1", models_dir=models)


def test_an_unknown_version_names_the_card_and_the_versions(models: Path) -> None:
    with pytest.raises(
        DetectError, match=r"joint-9\.card\.json: no such model card \(versions: joint-1\)"
    ):
        registry.load("joint-9", models_dir=models)


def test_the_settings_choose_the_detector(models: Path) -> None:
    plain = build_detector(DetectorSettings())
    assert isinstance(plain, ShapedDetector)
    assert isinstance(plain.inner, StreamingDetector)
    assert isinstance(build_detector(DetectorSettings(shape_enabled=False)), StreamingDetector)
    settings = DetectorSettings(model_version="joint-1", models_dir=models)
    chosen = build_detector(settings)
    assert isinstance(chosen, ShapedDetector)
    assert isinstance(chosen.inner, CombinedDetector)
    assert chosen.model_version == "streaming-baseline/1+joint-1+shape"
    alone = build_detector(settings.model_copy(update={"shape_enabled": False}))
    assert isinstance(alone, CombinedDetector)
    assert alone.model_version == "streaming-baseline/1+joint-1"


def test_a_version_is_a_name_not_a_path(models: Path) -> None:
    with pytest.raises(DetectError, match="letters, digits"):
        registry.load("../elsewhere/joint-1", models_dir=models)


def test_a_card_of_another_version_is_refused(models: Path) -> None:
    (models / "joint-2.card.json").write_text((models / "joint-1.card.json").read_text())
    with pytest.raises(
        ModelMismatch, match=r"joint-2\.card\.json: the card is of version 'joint-1'"
    ):
        registry.load("joint-2", models_dir=models)
