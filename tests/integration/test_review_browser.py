"""End to end in a real browser: one `healer demo` in approval mode on a scenario of two
memory leaks (``scenarios/review-page.yaml``), the review page in Debian's Chromium
driven by Playwright.

The tests share the demo and run in file order, as a person's morning would: silence
healer on shop/payments before its leak shows and see healer skip it; approve
shop/orders' restart from the overview by keyboard while its incident's page, open in a
second tab, follows it live from the finding to healed; acknowledge the escalation the
skipped leak left; read it all as a viewer, without JavaScript, and find no button.
Each test saves screenshots under the test-artifacts directory (``test-artifacts/`` at
the repository root, or ``HEALER_TEST_ARTIFACTS``); ``HEALER_SCREENSHOTS`` names a
folder that also gets the two the README shows.

Playwright's own browser download is not used: the tests launch /usr/bin/chromium
(installed by `make test`) headless. Without it they skip, or fail under CI (CI=true
or HEALER_REQUIRE_BROWSER=1).
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
from typing import Any

import pytest
import yaml

from healer.api.auth import hash_token

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).parent / "scenarios" / "review-page.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-operator-token"
VIEWER_TOKEN = "browser-test-viewer-token"
WAIT_S = 120.0
"""Upper bound for the demo to reach a step on a loaded machine (seconds idle)."""
WAIT_MS = WAIT_S * 1000
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not installed (make test installs Debian's chromium)"
    if os.environ.get("CI") == "true" or os.environ.get("HEALER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _artifacts() -> Path:
    folder = Path(os.environ.get("HEALER_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: Any, name: str, *, readme: bool = False) -> Path:
    """Save a full-page screenshot as a test artifact (and for the README if asked)."""
    path = _artifacts() / f"review-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme and (folder := os.environ.get("HEALER_SCREENSHOTS")):
        shutil.copy(path, Path(folder) / path.name)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"
    return path


class Demo:
    """`healer demo` in its own process, its output read line by line."""

    def __init__(self, workdir: Path, port: int) -> None:
        settings = workdir / "settings.yaml"
        viewer = {"name": "vic", "role": "viewer", "sha256": hash_token(VIEWER_TOKEN)}
        settings.write_text(yaml.safe_dump({"api": {"tokens": [viewer]}}))
        command = [
            sys.executable, "-c", "from healer.cli import main; main()", "demo",
            "--mode", "approval", "--scenario", str(SCENARIO), "--speed", "120",
            "--port", str(port), "--token", TOKEN, "--db", str(workdir / "audit.db"),
            "--config", str(settings),
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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from healer.api.server import bind

    _require_chromium()
    workdir = tmp_path_factory.mktemp("review-demo")
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # the demo binds it again; SO_REUSEADDR makes that immediate
    shutil.copytree(REPO / "playbooks", workdir / "playbooks")
    running = Demo(workdir, port)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def url(demo: Demo) -> str:
    return demo.wait_for(r"API and review page\s+(http://\S+)/").group(1)


@pytest.fixture(scope="module")
def kubeconfig(demo: Demo) -> str:
    return demo.wait_for(r"kubeconfig: (\S+)").group(1)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def operator(browser: Any, url: str) -> Iterator[Any]:
    """A browser context logged in as the demo's operator, in light mode."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, color_scheme="light")
    _log_in(context.new_page(), url, TOKEN).close()
    yield context
    context.close()


def _log_in(page: Any, url: str, token: str) -> Any:
    from playwright.sync_api import expect

    page.goto(f"{url}/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("#waiting")).to_be_visible()
    return page


def _restarted_at(kubeconfig: str, name: str) -> str | None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        dep = client.AppsV1Api(api).read_namespaced_deployment(name, "shop")
        return (dep.spec.template.metadata.annotations or {}).get(RESTARTED_AT)
    finally:
        api.close()


def test_silence_a_workload_and_healer_skips_it(
    demo: Demo, operator: Any, url: str, kubeconfig: str
) -> None:
    from playwright.sync_api import expect

    page = operator.new_page()
    page.goto(f"{url}/")
    page.locator("#silence-form-box summary").click()
    page.fill("#silence-namespace", "shop")
    page.fill("#silence-name", "payments")
    page.select_option("#silence-hours", "4")
    page.fill("#silence-reason", "load test")
    page.locator("#silence-form button[type=submit]").click()
    expect(page.locator("#opt-out-list")).to_contain_text("shop/payments")
    expect(page.locator("#opt-out-list")).to_contain_text("load test")

    demo.wait_for(r"shop/payments\s+PLAN\s+.*restart blocked: healer silenced on shop/payments")
    incident = demo.wait_for(r"#(\d+)\s+shop/payments\s+OUTCOME\s+escalated").group(1)
    page.goto(f"{url}/incidents/{incident}")
    blocked = page.locator("details[id^=guards] summary")
    expect(blocked).to_have_text("blocked by opt_out")
    expect(page.locator("details[id^=guards]")).to_contain_text("by demo-operator")
    expect(page.locator(".action-status")).to_have_count(0)
    assert _restarted_at(kubeconfig, "payments") is None, "healer kept its hands off"
    shoot(page, "skipped")
    page.close()


def test_approve_from_the_overview_and_the_incident_heals_live(
    demo: Demo, operator: Any, url: str, kubeconfig: str
) -> None:
    from playwright.sync_api import expect

    incident = demo.wait_for(r"#(\d+)\s+shop/orders\s+ACTION\s+restart pending_approval").group(1)
    assert _restarted_at(kubeconfig, "orders") is None, "nothing restarted before approval"
    story = operator.new_page()
    story.goto(f"{url}/incidents/{incident}")
    expect(story.locator("#outcome")).to_contain_text("Waiting for a person to approve")
    expect(story.locator("svg.chart").first).to_be_visible()
    story.evaluate("window.sameDocument = true")

    overview = operator.new_page()
    overview.goto(f"{url}/")
    row = overview.locator("#pending tr", has_text="shop/orders")
    action_id = row.locator("button[name=approve]").get_attribute("id")
    for _ in range(60):  # keyboard only: Tab to the button, Enter presses it
        overview.keyboard.press("Tab")
        if overview.evaluate("document.activeElement.id") == action_id:
            break
    else:
        raise AssertionError(f"Tab never reached #{action_id}")
    overview.keyboard.press("Enter")
    expect(overview).to_have_url(f"{url}/")
    expect(overview.locator("#pending")).to_have_count(0)
    overview.close()

    # The incident's page, untouched since it was opened, follows the daemon.
    expect(story.locator(".action-status").last).to_have_text("succeeded", timeout=WAIT_MS)
    expect(story.locator("#outcome")).to_contain_text("healed", timeout=WAIT_MS)
    assert story.evaluate("window.sameDocument") is True, "updated without a reload"
    assert int(story.locator("#live").get_attribute("data-updates") or 0) > 0
    expect(story.locator("pre.kubectl").first).to_contain_text(
        "kubectl -n shop patch deployments orders"
    )
    expect(story.locator("svg.chart title", has_text="healed").first).to_be_attached()
    expect(story.locator("svg.chart line.m-rollout").first).to_be_attached()  # before healed
    assert _restarted_at(kubeconfig, "orders") is not None, "the restart reached the cluster"
    story.reload()
    shoot(story, "incident", readme=True)
    story.close()


def test_acknowledge_the_escalation_from_the_overview(operator: Any, url: str) -> None:
    from playwright.sync_api import expect

    page = operator.new_page()
    page.goto(f"{url}/")
    escalations = page.locator("#escalations")
    expect(escalations).to_contain_text("shop/payments")
    expect(page.locator(".window").first).to_contain_text("healed")
    shoot(page, "overview", readme=True)
    escalations.locator("tr", has_text="shop/payments").locator("button[name=acknowledge]").click()
    expect(page).to_have_url(f"{url}/")
    expect(page.locator("#nothing-waits")).to_be_visible()
    page.goto(f"{url}/incidents?workload=payments")
    page.locator("#incidents a").first.click()
    expect(page.locator("#acknowledged")).to_contain_text("Acknowledged by demo-operator")
    shoot(page, "acknowledged")
    page.close()


def test_a_viewer_reads_every_page_without_javascript_and_finds_no_button(
    browser: Any, url: str
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False, color_scheme="dark")
    try:
        page = _log_in(context.new_page(), url, VIEWER_TOKEN)
        expect(page.locator("#opt-out-list")).to_contain_text("shop/payments")
        expect(page.locator(".window").first).to_contain_text("incidents")
        expect(page.locator("main button")).to_have_count(0)
        shoot(page, "viewer-dark")
        page.goto(f"{url}/incidents")
        page.locator("#incidents a").first.click()
        expect(page.locator("#diagnosis")).to_contain_text("memory leak")
        expect(page.locator("main button")).to_have_count(0)
    finally:
        context.close()
