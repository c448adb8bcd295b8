"""`healer train` from the command line: history in, a registered version out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def healer(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_train_on_a_simulated_scenario_registers_a_version(tmp_path: Path) -> None:
    result = healer(
        "train", "--scenario", "cpu-hog", "--duration", "3600", "--models-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert f"registered joint-1: {tmp_path / 'joint-1.card.json'}" in result.stdout
    assert "windows detected" in result.stdout and "streaming alone" in result.stdout
    card = json.loads((tmp_path / "joint-1.card.json").read_text())
    assert card["training"]["sources"] == ["sim:cpu-hog"]
    assert [e["version"] for e in json.loads((tmp_path / "registry.json").read_text())] == [
        "joint-1"
    ]


def test_train_on_a_bad_csv_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "history.csv"
    bad.write_text("timestamp,namespace,workload,cpu\n1,shop,cart,high\n")
    result = healer("train", "--csv", str(bad), "--models-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"healer: error: {bad}: line 2, column 'cpu': 'high' is not a number"
    ]


def test_train_without_history_says_what_to_give(tmp_path: Path) -> None:
    result = healer("train", "--models-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no history: give --scenario, --csv, or --start/--end" in result.stderr


def test_a_configured_model_that_does_not_load_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "joint-1.pkl").write_bytes(b"\x80\x04K\x01.")
    settings = tmp_path / "healer.yaml"
    settings.write_text(f"detector: {{model_version: joint-1.pkl, models_dir: {tmp_path}}}\n")
    result = healer("demo", "--port", "0", "--duration", "0", "--config", str(settings))
    assert result.returncode == 2
    assert "joint-1.pkl: refusing a pickle file" in result.stderr


def test_train_reads_operators_labels_from_the_audit_store(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from healer.audit import AuditStore, FeedbackInput
    from healer.types import Cause, Direction, Finding, Signal, SignalDeviation, Verdict
    from healer.types import WorkloadRef as Ref

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    when = datetime(2026, 1, 5, 12, tzinfo=UTC)
    deviation = SignalDeviation(Signal.CPU, 0.9, 0.3, 5.0, Direction.UP)
    finding = Finding(
        Ref("shop", "Deployment", "cart"), when, 0.97, (deviation,), when, model_version="m"
    )
    incident = store.open_incident(finding)
    label = FeedbackInput(
        Verdict.FALSE_POSITIVE, Cause.UNKNOWN, None, by="olga", at=when + timedelta(minutes=5)
    )
    store.record_feedback(incident, label)
    store.close()

    args = ["train", "--scenario", "cpu-hog", "--duration", "1800", "--feedback"]
    args += ["--models-dir", str(tmp_path / "models")]
    result = subprocess.run(
        [sys.executable, "-m", "healer.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HEALER_STORE__URL": url},
    )
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "models" / "joint-1.card.json").read_text())
    assert card["training"]["feedback"]["false_positive"] == 1
