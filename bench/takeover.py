"""How long after a SIGKILL of the leader another `healer run` leads, on the wall clock.

    python bench/takeover.py [--daemons 3] [--rounds 2]

`healer sim serve` is the cluster; ``--daemons`` `healer run` processes share its Lease
and one SQLite audit store, with Prometheus unreachable (leadership needs none). Each
round SIGKILLs the Lease holder and times until another daemon holds the Lease, polled
every 0.1 s. The Lease lasts ``leader.lease_duration_s`` (15 s) and followers try it
every ``leader.retry_period_s`` (2 s), so a takeover lands between 13 s and 19 s after
the kill, plus process and HTTP overheads: this prints what those add on this machine.
tests/unit/test_leader.py checks the bound itself, in virtual time;
tests/integration/test_healer_run.py checks that another daemon takes over.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes import config as kube_config
from processes import healer, wait_for

from healer.config import LeaderSettings

REPO = Path(__file__).resolve().parents[1]


def lease_holder(kubeconfig: Path) -> str:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("healer", "healer")
        return str(lease.spec.holder_identity or "")
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    finally:
        api.close()


def unused_port() -> int:
    """A loopback port nothing listens on, for the unreachable Prometheus."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemons", type=int, default=3, help="healer run processes")
    parser.add_argument("--rounds", type=int, default=2, help="leaders killed, one per round")
    args = parser.parse_args()
    if not 1 <= args.rounds < args.daemons:
        parser.error("--rounds must be at least 1 and below --daemons")
    leader = LeaderSettings()
    low_s = leader.lease_duration_s - leader.retry_period_s
    high_s = leader.lease_duration_s + 2 * leader.retry_period_s

    workdir = Path(tempfile.mkdtemp(prefix="healer-takeover-"))
    kubeconfig = workdir / "kubeconfig"
    settings = {
        "store": {"url": f"sqlite:///{workdir / 'audit.db'}"},
        "api": {"host": "127.0.0.1", "port": 0},
        "prometheus": {"url": f"http://127.0.0.1:{unused_port()}", "retries": 0},
        "daemon": {"interval_s": 2},
        "playbooks_dir": str(REPO / "playbooks"),
    }
    config = workdir / "healer.yaml"
    config.write_text(yaml.safe_dump(settings))
    sim = healer(
        ["sim", "serve", "--port", "0", "--kubeconfig-out", str(kubeconfig)], workdir, "sim"
    )
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    try:
        wait_for("the simulated cluster", lambda: kubeconfig.exists() or None, 60, 0.1)
        for i in range(args.daemons):
            name = f"healer-{i}"
            daemons[name] = healer(
                ["run", "--config", str(config), "--kubeconfig", str(kubeconfig)],
                workdir,
                name,
                HEALER_LEADER__IDENTITY=name,
            )
        took: list[float] = []
        for round_ in range(1, args.rounds + 1):
            holder = wait_for("a leader", lambda: lease_holder(kubeconfig), 120, 0.1)
            print(f"round {round_}: {holder} leads", flush=True)
            daemons[holder].send_signal(signal.SIGKILL)
            daemons[holder].wait()
            killed = time.monotonic()
            wait_for(
                "another leader",
                lambda killed=holder: (h := lease_holder(kubeconfig)) and h != killed,
                120,
                0.1,
            )
            took.append(time.monotonic() - killed)
            print(f"round {round_}: {holder} killed, another leads after {took[-1]:.1f} s")
        print(
            f"takeover after SIGKILL: median {statistics.median(took):.1f} s, "
            f"max {max(took):.1f} s over {len(took)} rounds "
            f"(Lease alone: {low_s:g}-{high_s:g} s)"
        )
    finally:
        for process in [*daemons.values(), sim]:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
