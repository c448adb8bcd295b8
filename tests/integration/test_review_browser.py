"""End to end in a real browser: `healer demo` in approval mode, the review page in
Debian's Chromium driven by Playwright; log in, see the incident, approve its pending
restart, and find the restart made in the simulated cluster.

Playwright's own browser download is not used: the test launches /usr/bin/chromium
(installed by `make test`) headless with a fresh profile. Without it the test skips,
or fails under CI (CI=true or HEALER_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-operator-token"
WAIT_S = 120.0
"""Upper bound for the demo to reach a pending action on a loaded machine (~15 s idle)."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not installed (make test installs Debian's chromium)"
    if os.environ.get("CI") == "true" or os.environ.get("HEALER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


class Demo:
    """`healer demo` in its own process, its output read line by line."""

    def __init__(self, workdir: Path, port: int) -> None:
        command = [
            sys.executable, "-c", "from healer.cli import main; main()", "demo",
            "--mode", "approval", "--scenario", "memory-leak", "--speed", "120",
            "--port", str(port), "--token", TOKEN, "--db", str(workdir / "audit.db"),
        ]  # fmt: skip
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout_s: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    from healer.api.server import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # the demo binds it again; SO_REUSEADDR makes that immediate
    shutil.copytree(Path(__file__).resolve().parents[2] / "playbooks", tmp_path / "playbooks")
    running = Demo(tmp_path, port)
    yield running
    running.stop()


def _restarted_at(kubeconfig: str) -> str | None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        dep = client.AppsV1Api(api).read_namespaced_deployment("orders", "shop")
        return (dep.spec.template.metadata.annotations or {}).get(RESTARTED_AT)
    finally:
        api.close()


def test_approve_a_pending_restart_in_the_review_page(demo: Demo, tmp_path: Path) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    url = demo.wait_for(r"API and review page\s+(http://\S+)/").group(1)
    kubeconfig = demo.wait_for(r"kubeconfig: (\S+)").group(1)
    demo.wait_for(r"shop/orders\s+ACTION\s+restart pending_approval")
    assert _restarted_at(kubeconfig) is None, "nothing restarted before approval"

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            page = browser.new_page()
            page.goto(f"{url}/")
            expect(page).to_have_url(re.compile(r"/login"))
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("#incidents")).to_contain_text("shop/orders")
            pending = page.locator("#pending")
            expect(pending).to_contain_text("restart")
            pending.locator("a").first.click()  # the incident's page
            expect(page.locator("h2")).to_contain_text("shop/orders")
            expect(page.locator("svg.chart").first).to_be_visible()
            page.click("#pending button[name=approve]")
            expect(page.locator("body")).to_contain_text("approved action")
            deadline = time.monotonic() + 60
            while "succeeded" not in page.locator(".action-status").all_inner_texts():
                assert time.monotonic() < deadline, "the approved restart was not taken"
                time.sleep(0.5)
                page.reload()
            page.screenshot(path=str(tmp_path / "review-page.png"))
            if folder := os.environ.get("HEALER_SCREENSHOTS"):
                shutil.copy(tmp_path / "review-page.png", Path(folder) / "review-page.png")
        finally:
            browser.close()

    assert _restarted_at(kubeconfig) is not None, "the restart reached the simulated cluster"
    assert (tmp_path / "review-page.png").stat().st_size > 10_000
