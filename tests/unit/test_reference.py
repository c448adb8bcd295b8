"""docs/configuration.md is the reference generated from the Settings model, and current."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.config import load_settings
from healer.reference import markdown, rows

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_reference_is_current() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == markdown(), (
        "docs/configuration.md is out of date: python -m healer.reference > docs/configuration.md"
    )


def test_every_setting_is_documented_with_its_default_and_variable() -> None:
    table = rows(load_settings(None).__class__)
    assert len(table) > 40
    undocumented = [key for key, _, _, _, doc in table if not doc]
    assert not undocumented, f"settings without a docstring in config.py: {undocumented}"
    by_key = {key: (kind, default, env) for key, kind, default, env, _ in table}
    assert by_key["leader.lease_duration_s"] == ("int", "15", "HEALER_LEADER__LEASE_DURATION_S")
    assert by_key["guards.mode"][1] == "dry_run"
    assert by_key["guards.denied_namespaces"][1] == "[kube-system]"
    assert by_key["playbooks_dir"][2] == "HEALER_PLAYBOOKS_DIR"


def test_the_environment_variables_named_are_the_ones_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALER_LEADER__RENEW_DEADLINE_S", "7")
    monkeypatch.setenv("HEALER_DAEMON__BACKOFF_MAX_S", "42")
    settings = load_settings(None)
    assert settings.leader.renew_deadline_s == 7
    assert settings.daemon.backoff_max_s == 42
