"""``healer gate``'s answers to bad input: one line naming the option, exit code 2 (the
code a pipeline reads as "could not judge")."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli import assert_one_line_error, healer


def test_a_workload_that_is_not_namespace_name() -> None:
    result = healer("gate", "--workload", "cart", "--prometheus", "http://127.0.0.1:9")
    assert_one_line_error(result, "--workload", "'cart' is not namespace/name")


def test_a_window_that_is_not_a_duration() -> None:
    result = healer("gate", "--workload", "shop/cart", "--for", "soon")
    assert_one_line_error(result, "--for", "duration such as 90s")


def test_no_prometheus_to_learn_from(tmp_path: Path) -> None:
    result = healer("gate", "--workload", "shop/cart", cwd=tmp_path)
    assert_one_line_error(result, "prometheus.url")


def test_a_settings_file_that_is_not_there(tmp_path: Path) -> None:
    result = healer("gate", "--workload", "shop/cart", "--config", str(tmp_path / "no.yaml"))
    assert_one_line_error(result, "no such settings file")
