"""The command line's answers to bad input: one line naming the fault, exit code 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def healer(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_scenario() -> None:
    result = healer("demo", "--scenario", "nope", "--port", "0")
    assert_one_line_error(result, "unknown scenario 'nope'", "default")


def test_demo_names_bad_input_before_it_loads_the_rest(tmp_path: Path) -> None:
    """A bad scenario or settings file is named before the simulator, the detector and
    the API are imported (seconds of a person's wait)."""
    bad = tmp_path / "settings.yaml"
    bad.write_text("guards: [\n")
    for args in (("--scenario", "nope"), ("--config", str(bad))):
        probe = (
            "import sys\n"
            "from healer.cli import main\n"
            f"sys.argv = ['healer', 'demo', *{args!r}, '--port', '0']\n"
            "try:\n    main()\n"
            "except SystemExit as exit:\n"
            "    loaded = [m for m in ('healer.harness', 'healer.api.app') if m in sys.modules]\n"
            "    print(exit.code, loaded)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert result.stdout.strip() == "2 []", (args, result.stdout, result.stderr)


def test_malformed_playbook(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nmatch:\n  causes: [memory_leak]\naction:\n  kind: reboot\n"
    )
    result = healer("demo", "--playbooks", str(tmp_path), "--port", "0", "--duration", "0")
    assert_one_line_error(result, "bad.yaml:5", "action.kind")


def test_malformed_playbook_through_validate(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nmatch: [\n")
    assert_one_line_error(healer("playbooks", "validate", str(tmp_path)), "bad.yaml")


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = healer("demo", "--port", str(port), "--duration", "0")
    assert_one_line_error(result, f"127.0.0.1:{port}")


def test_sim_serve_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = healer(
            "sim", "serve", "--port", str(port), "--kubeconfig-out", str(tmp_path / "kc")
        )
    assert_one_line_error(result, f"127.0.0.1:{port}")


def test_valid_playbooks_are_listed() -> None:
    result = healer("playbooks", "validate", str(REPO / "playbooks"))
    assert result.returncode == 0, result.stderr
    assert "ok  restart-on-memory-leak" in result.stdout


@pytest.mark.integration
def test_demo_runs_heals_and_stops(tmp_path: Path) -> None:
    """A short demo at high speed: the three faults healed, then a clean exit."""
    result = healer(
        "demo",
        "--port",
        "0",
        "--speed",
        "100000",
        "--duration",
        "5400",
        "--db",
        str(tmp_path / "audit.db"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcomes = [line for line in result.stdout.splitlines() if "OUTCOME" in line]
    assert len(outcomes) == 3
    assert all("OUTCOME   healed:" in line for line in outcomes)
    assert "healer demo: stopped" in result.stdout


def test_train_diagnoser_writes_a_model_the_daemon_loads(tmp_path: Path) -> None:
    from healer.diagnose.learned import LearnedDiagnoser

    out = tmp_path / "diagnoser.skops"
    result = healer(
        "train-diagnoser",
        str(out),
        "--scenarios",
        "cpu-hog",
        "--seeds",
        "1",
        "--hours",
        "1",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "labelled diagnoses" in result.stdout and out.with_suffix(".json").exists()
    assert LearnedDiagnoser.load(out).support_


def test_train_diagnoser_learns_operators_labels_from_the_audit_store(tmp_path: Path) -> None:
    import os
    from datetime import UTC, datetime, timedelta

    from healer.audit.store import AuditStore, FeedbackInput
    from healer.diagnose.features import FEATURES
    from healer.diagnose.learned import LearnedDiagnoser
    from healer.types import Cause, Diagnosis, Finding, Verdict, WorkloadRef

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    out = tmp_path / "diagnoser.skops"
    feedback_only = ("--scenarios", "", "--feedback")

    def train() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*(sys.executable, "-m", "healer.cli", "train-diagnoser", str(out)), *feedback_only],
            cwd=REPO,
            env={**os.environ, "HEALER_STORE__URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert_one_line_error(train(), "no labelled diagnoses")
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    store = AuditStore(url)
    for name, cause in {"cart": Cause.CPU_HOG, "search": None}.items():
        workload = WorkloadRef("shop", "Deployment", name)
        finding = Finding(workload, at, 0.9, (), at - timedelta(minutes=1), "test")
        incident = store.open_incident(finding)
        row = {feature: float(i) for i, feature in enumerate(FEATURES)}
        diagnosis = Diagnosis(workload, Cause.OVERLOAD, 0.8, "rules")
        store.record_diagnosis(incident, diagnosis, at=at, features=row)
        verdict = Verdict.TRUE_POSITIVE if cause else Verdict.FALSE_POSITIVE
        store.record_feedback(incident, FeedbackInput(verdict, cause, None, "ann", at))
    store.close()
    result = train()
    assert result.returncode == 0, result.stderr
    assert "2 labelled diagnoses" in result.stdout
    assert LearnedDiagnoser.load(out).support_ == {Cause.CPU_HOG: 1, Cause.UNKNOWN: 1}


def test_alias_bomb_playbook_through_validate(tmp_path: Path) -> None:
    from test_yamlfile import laughs

    (tmp_path / "bomb.yaml").write_text("name: bomb\n" + laughs())
    result = healer("playbooks", "validate", str(tmp_path), timeout=30)
    assert_one_line_error(result, "bomb.yaml", "aliases are expanded")


def test_demo_takes_the_store_from_the_environment(tmp_path: Path) -> None:
    import os

    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    env = {**os.environ, "HEALER_STORE__URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "healer.cli", "demo", "--port", "0", "--duration", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"audit store          {url}" in result.stdout
    assert (tmp_path / "from-env.db").is_file()


def test_demo_takes_the_store_from_the_settings_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-file.db'}"
    config = tmp_path / "healer.yaml"
    config.write_text(f"store: {{url: '{url}'}}\n")
    result = healer("demo", "--config", str(config), "--port", "0", "--duration", "0")
    assert result.returncode == 0, result.stderr
    assert f"audit store          {url}" in result.stdout


def test_demo_on_an_earlier_db_resumes_after_its_history(tmp_path: Path) -> None:
    from datetime import timedelta

    from healer.audit.store import AuditStore
    from healer.sim.scenario import load_scenario
    from healer.types import Direction, Finding, Signal, SignalDeviation, WorkloadRef

    db = tmp_path / "audit.db"
    start = load_scenario("default").start
    later = start + timedelta(hours=5)  # the first run went on for five hours
    store = AuditStore(f"sqlite:///{db}")
    deviation = SignalDeviation(Signal.CPU, 2.0, 1.0, 9.0, Direction.UP)
    cart = WorkloadRef("shop", "Deployment", "cart")
    store.open_incident(Finding(cart, later, 0.99, (deviation,), later, "m"))
    store.close()

    result = healer("demo", "--db", str(db), "--port", "0", "--duration", "0")

    assert result.returncode == 0, result.stderr
    resumed = start + timedelta(days=1)
    assert (
        f"simulated time starts {resumed:%Y-%m-%d %H:%M} UTC (after the audit store's history)"
        in result.stdout
    )
