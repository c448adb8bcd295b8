"""Settings that would make the guards or the cycle meaningless are refused at start-up,
naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.config import load_settings
from healer.errors import ConfigError


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("guards:\n  cooldown_s: -1\n", "guards.cooldown_s"),
        ("guards:\n  rate_limit_window_s: 0\n", "guards.rate_limit_window_s"),
        ("guards:\n  max_actions_per_window: -3\n", "guards.max_actions_per_window"),
        ("guards:\n  max_in_flight: -1\n", "guards.max_in_flight"),
        ("guards:\n  min_replicas: -1\n", "guards.min_replicas"),
        ("guards:\n  max_replicas: 0\n", "guards.max_replicas"),
        ("guards:\n  flip_back_window_s: -60\n", "guards.flip_back_window_s"),
        ("guards:\n  anomaly_brake_min_workloads: 0\n", "guards.anomaly_brake_min_workloads"),
        ("daemon:\n  interval_s: 0\n", "daemon.interval_s"),
        ("daemon:\n  window_s: -3600\n", "daemon.window_s"),
        ("daemon:\n  verify_stable_s: -1\n", "daemon.verify_stable_s"),
    ],
)
def test_out_of_range_settings_name_the_file_and_field(
    tmp_path: Path, yaml_text: str, field: str
) -> None:
    path = tmp_path / "healer.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message


def test_a_replica_floor_above_the_ceiling_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "healer.yaml"
    path.write_text("guards:\n  min_replicas: 8\n  max_replicas: 4\n")
    with pytest.raises(ConfigError, match=r"min_replicas \(8\) must not exceed max_replicas \(4\)"):
        load_settings(path)


def test_the_edges_of_the_ranges_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "healer.yaml"
    path.write_text(
        "guards:\n  cooldown_s: 0\n  min_replicas: 3\n  max_replicas: 3\n"
        "  max_in_flight: 0\n  flip_back_window_s: 0\n"
        "daemon:\n  verify_stable_s: 0\n"
    )
    settings = load_settings(path)
    assert settings.guards.min_replicas == settings.guards.max_replicas == 3
    assert settings.guards.cooldown_s == 0
