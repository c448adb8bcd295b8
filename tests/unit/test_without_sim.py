"""The base install, without the `sim` extra: `healer run` imports and runs, and the
commands that need the simulated cluster say to install it.

Each test runs healer in a fresh interpreter whose imports of the simulator, the chaos
benchmark and the extra's packages fail, as they do where they are not installed (the
image); the import-linter contract "core-without-sim" holds the same line statically.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import assert_one_line_error
from test_cli_run import free_port, kubeconfig

REPO = Path(__file__).resolve().parents[2]
SIM_EXTRA = ("healer.sim", "healer.chaos", "jsonpatch", "matplotlib")

_BLOCKER = """
import sys

BLOCKED = {blocked!r}


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def run_without(
    blocked: tuple[str, ...], code: str, *, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``blocked`` modules cannot be imported."""
    program = _BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def healer_without_sim(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    code = f"""
    import sys
    import healer.cli
    sys.argv = ["healer", *{list(args)!r}]
    healer.cli.main()
    """
    return run_without(SIM_EXTRA, code, cwd=cwd)


def test_the_daemon_path_imports_without_the_sim_extra_or_rich() -> None:
    """What `healer run` loads: the runner, the daemon, the API, the CLI module."""
    blocked = (*SIM_EXTRA, "rich")
    result = run_without(
        blocked,
        """
        import healer.api.app
        import healer.cli
        import healer.daemon
        import healer.runner
        loaded = sorted(m for m in sys.modules if m.startswith(BLOCKED))
        print("loaded:", loaded)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout


def test_the_blocker_blocks() -> None:
    """The check above would pass vacuously if the blocked imports went through."""
    result = run_without(SIM_EXTRA, "import healer.sim.cluster\n")
    assert result.returncode != 0
    assert "No module named 'healer.sim'" in result.stderr


@pytest.mark.parametrize("args", [("--help",), ("run", "--help")])
def test_help_without_the_sim_extra(args: tuple[str, ...]) -> None:
    result = healer_without_sim(*args)
    assert result.returncode == 0, result.stderr
    assert "Usage: healer" in result.stdout


def test_run_once_without_the_sim_extra(tmp_path: Path) -> None:
    """The loop starts and runs its cycle; Prometheus is down, so it ends naming it."""
    config = tmp_path / "healer.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 'audit.db'}'}}\n"
        f"playbooks_dir: {REPO / 'playbooks'}\nprometheus: {{retries: 0, timeout_s: 1}}\n"
        "leader: {enabled: false}\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    result = healer_without_sim(
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
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"healer: error: healer run --once: no cycle ran: no metrics from prometheus.url {url}: "
    )


@pytest.mark.parametrize(
    "args",
    [
        ("sim", "scenarios"),
        ("sim", "serve", "--port", "0"),
        ("demo", "--port", "0"),
        ("bench", "chaos", "--scenarios", "memory-leak", "--seeds", "1"),
        ("train", "--scenario", "memory-leak", "--duration", "900"),
    ],
)
def test_commands_that_need_the_simulator_say_to_install_it(args: tuple[str, ...]) -> None:
    result = healer_without_sim(*args)
    assert_one_line_error(result, "needs the simulated cluster", "install healer[sim]")
