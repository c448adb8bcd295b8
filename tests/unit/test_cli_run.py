"""`healer run`'s answers to bad input: one line naming the file or setting, exit code 2."""

from __future__ import annotations

import socket
from pathlib import Path

from test_cli import assert_one_line_error, healer

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: c, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: c}}]\n"
    )
    return path


def test_missing_settings_file(tmp_path: Path) -> None:
    result = healer("run", "--config", str(tmp_path / "nope.yaml"))
    assert_one_line_error(result, "nope.yaml", "no such settings file")


def test_invalid_setting_names_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "healer.yaml"
    config.write_text("daemon:\n  interval_s: soon\n")
    assert_one_line_error(
        healer("run", "--config", str(config)), "healer.yaml", "daemon.interval_s"
    )


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "healer.yaml"
    config.write_text("leader:\n  lease_seconds: 15\n")
    assert_one_line_error(
        healer("run", "--config", str(config)), "healer.yaml", "leader.lease_seconds"
    )


def test_missing_kubeconfig_names_the_setting(tmp_path: Path) -> None:
    result = healer(
        "run", "--kubeconfig", str(tmp_path / "absent"), "--prometheus", "http://127.0.0.1:9"
    )
    assert_one_line_error(result, "cluster.kubeconfig", "absent")


def test_unset_prometheus_url_names_the_setting(tmp_path: Path) -> None:
    result = healer("run", "--kubeconfig", str(kubeconfig(tmp_path)))
    assert_one_line_error(result, "prometheus.url", "not set")


def test_prometheus_url_that_is_not_a_url(tmp_path: Path) -> None:
    result = healer(
        "run", "--kubeconfig", str(kubeconfig(tmp_path)), "--prometheus", "prometheus:9090"
    )
    assert_one_line_error(result, "prometheus.url", "'prometheus:9090'")


def test_a_cluster_and_prometheus_down_at_start_fail_once_naming_them(tmp_path: Path) -> None:
    """A valid configuration with both dependencies down: it starts, names the settings
    pointing at them, and --once ends without a leader, without acting, and non-zero."""
    config = tmp_path / "healer.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 'audit.db'}'}}\n"
        f"playbooks_dir: {REPO / 'playbooks'}\nprometheus: {{retries: 0, timeout_s: 1}}\n"
    )
    result = healer(
        "run",
        "--once",
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig(tmp_path)),
        "--prometheus",
        f"http://127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert '"setting": "cluster.kubeconfig"' in result.stderr
    assert '"setting": "prometheus.url"' in result.stderr
    assert '"event": "not_leader"' in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("healer: error: healer run --once: no cycle ran: ")
    assert "Kubernetes API unavailable (cluster.kubeconfig)" in last
    assert "Traceback" not in result.stderr


def test_once_with_prometheus_unreachable_fails_naming_it(tmp_path: Path) -> None:
    """Leader election off, so the cycle runs; Prometheus down: one line, exit 2."""
    config = tmp_path / "healer.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 'audit.db'}'}}\n"
        f"playbooks_dir: {REPO / 'playbooks'}\nprometheus: {{retries: 0, timeout_s: 1}}\n"
        "leader: {enabled: false}\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    result = healer(
        "run",
        "--once",
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig(tmp_path)),
        "--prometheus",
        url,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"healer: error: healer run --once: no cycle ran: no metrics from prometheus.url {url}: "
    )
    assert "stopped after" not in result.stdout
