"""Recording rules generated from the signal table, and the queries that read them."""

from __future__ import annotations

from pathlib import Path

import yaml

from healer.collect.prometheus import PrometheusSource
from healer.collect.rules import recording_rules, rules_file
from healer.collect.signals import POD_OWNER_RECORD, RECORDS, build_queries
from healer.config import PrometheusSettings
from healer.types import Signal

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "deploy" / "prometheus" / "healer-rules.yaml"


def _rules(**settings: object) -> list[dict[str, str]]:
    groups = recording_rules(**settings)["groups"]  # type: ignore[arg-type]
    assert len(groups) == 1
    rules: list[dict[str, str]] = groups[0]["rules"]
    return rules


def test_the_shipped_file_is_the_one_generated_for_the_default_settings() -> None:
    defaults = PrometheusSettings()
    generated = rules_file(
        signal_set=defaults.signal_set,
        window_s=defaults.rate_window_s,
        mapping=defaults.workload_mapping,
        pod_label=defaults.workload_label,
        interval_s=defaults.step_s,
    )
    assert SHIPPED.read_text() == generated, "regenerate it: healer rules > " + str(SHIPPED)
    assert yaml.safe_load(generated) == recording_rules()


def test_the_map_is_recorded_first_then_every_signal_joined_to_it() -> None:
    rules = _rules()
    assert [r["record"] for r in rules] == [POD_OWNER_RECORD, *(RECORDS[s] for s in Signal)]
    assert "kube_replicaset_owner" in rules[0]["expr"]
    for rule in rules[1:]:
        assert "kube_pod_owner{" not in rule["expr"], rule["record"]
        expr = (
            rule["expr"]
            .replace('"$1"', "")
            .replace('"statefulset/$1"', "")
            .replace('"daemonset/$1"', "")
        )
        assert "$" not in expr, rule["record"]
    joined = [r for r in rules[1:] if POD_OWNER_RECORD in r["expr"]]
    # ready_ratio reads kube-state-metrics' Deployment series, which need no join.
    assert len(joined) == len(Signal) - 1


def test_rules_follow_the_settings() -> None:
    rules = _rules(window_s=120, mapping="pod_label", pod_label="app.kubernetes.io/name")
    assert 'kube_pod_labels{label_app_kubernetes_io_name!=""}' in rules[0]["expr"]
    assert "[120s]" in rules[1]["expr"]
    istio = {r["record"]: r["expr"] for r in _rules(signal_set="istio")}
    assert "istio_requests_total" in istio[RECORDS[Signal.REQUEST_RATE]]
    assert recording_rules(interval_s=30)["groups"][0]["interval"] == "30s"


def test_recorded_queries_are_selectors_and_overrides_still_win() -> None:
    queries = build_queries(recorded=True, overrides={Signal.CPU: "my_cpu"})
    by_signal = {q.signal: q for q in queries}
    assert by_signal[Signal.CPU].promql == "my_cpu" and by_signal[Signal.CPU].overridden
    for signal in Signal:
        if signal != Signal.CPU:
            assert by_signal[signal].promql == RECORDS[signal]


def test_settings_switch_the_source_to_the_recorded_series() -> None:
    settings = PrometheusSettings(url="http://prometheus.test:9090", recording_rules=True)
    source = PrometheusSource.from_settings(settings)
    assert [q.promql for q in source.queries] == [RECORDS[s] for s in Signal]


def test_rules_command_prints_the_file_for_the_settings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healer.cli import app

    assert CliRunner().invoke(app, ["rules"]).stdout == SHIPPED.read_text()
    config = tmp_path / "healer.yaml"
    config.write_text(yaml.safe_dump({"prometheus": {"step_s": 30, "rate_window_s": 120}}))
    result = CliRunner().invoke(app, ["rules", "--config", str(config)])
    assert result.exit_code == 0, result.stdout
    group = yaml.safe_load(result.stdout)["groups"][0]
    assert group["interval"] == "30s" and "[120s]" in group["rules"][1]["expr"]
