"""Reporting a rollback to GitHub and GitLab, against a local contract server.

The server stands in for both forges' REST APIs on loopback: it records each request
and answers as the forge documents (201 with the created object), or with the failure
a test scripts. The requests must be the ones the forges document: GitHub's "create a
deployment status" (``POST /repos/{owner}/{repo}/deployments/{id}/statuses``, bearer
token, ``application/vnd.github+json``, API version 2022-11-28, ``state``,
``description`` of at most 140 characters, ``log_url``), GitLab's "post comment to
commit" (``POST /api/v4/projects/:id/repository/commits/:sha/comments``,
``PRIVATE-TOKEN``, ``note``).

The last test runs the whole loop on the bad-release scenario with a release GitHub
told of, and checks that the rollback reaches the server with the incident's link.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.act.forges import ForgeReporter
from healer.audit.store import AuditStore
from healer.config import ReleaseSettings, load_settings
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import Release, ReleaseSource, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CART = WorkloadRef("shop", "Deployment", "cart")
SHA = "c1c67abbaf91f624d1c7b1a8f5fcd5aec4b4e4d0"
SETTINGS = ReleaseSettings(github_token="gh-token", gitlab_token="gl-token", report_timeout_s=2)


@dataclass
class Forge:
    """The contract server: what it was sent, and the statuses it answers with next."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def wait(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def forge() -> Iterator[Forge]:
    state = Forge(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            state.received.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
            status = state.answers.pop(0) if state.answers else 201
            answer = json.dumps({"id": len(state.received), **(body or {})}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def github_release(forge: Forge) -> Release:
    return Release(
        workload=CART,
        at=load_scenario("bad-release").start + timedelta(seconds=1840),
        source=ReleaseSource.GITHUB,
        image="registry.local/shop/cart:2.5.0",
        commit=SHA,
        author="linus",
        pipeline="shop/cart",
        pipeline_url="https://github.com/shop/cart/actions/runs/42",
        report_url=f"{forge.url}/repos/shop/cart/deployments/145/statuses",
    )


def link(incident_id: int) -> str:
    return f"https://healer.example/incidents/{incident_id}"


def test_github_gets_a_failure_status_with_the_incidents_link(forge: Forge) -> None:
    reporter = ForgeReporter(SETTINGS, link=link)
    with capture_logs() as logs:
        reporter.report(github_release(forge), incident_id=7, to_revision=3)
    [sent] = forge.received
    assert sent["path"] == "/repos/shop/cart/deployments/145/statuses"
    headers = sent["headers"]
    assert headers["Authorization"] == "Bearer gh-token"
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent["body"]["state"] == "failure"
    assert sent["body"]["log_url"] == "https://healer.example/incidents/7"
    assert sent["body"]["description"].startswith("healer rolled back shop/cart to revision 3")
    assert len(sent["body"]["description"]) <= 140
    assert [e["event"] for e in logs] == ["release_reported"]


def test_gitlab_gets_a_comment_on_the_commit(forge: Forge) -> None:
    url = f"{forge.url}/api/v4/projects/30/repository/commits/{SHA}/comments"
    release = Release(
        workload=CART, at=github_release(forge).at, source=ReleaseSource.GITLAB, report_url=url
    )
    ForgeReporter(SETTINGS, link=link).report(release, incident_id=8, to_revision=2)
    [sent] = forge.received
    assert sent["path"] == f"/api/v4/projects/30/repository/commits/{SHA}/comments"
    assert sent["headers"]["PRIVATE-TOKEN"] == "gl-token"
    assert "Authorization" not in sent["headers"]
    assert sent["body"] == {
        "note": "healer rolled back shop/cart to revision 2: the release of this commit "
        "was unhealthy. See https://healer.example/incidents/8."
    }


def test_a_server_error_is_retried_once_a_refusal_is_not(forge: Forge) -> None:
    reporter = ForgeReporter(SETTINGS, link=link)
    forge.answers = [502]
    with capture_logs() as logs:
        reporter.report(github_release(forge), incident_id=7, to_revision=3)
    assert len(forge.received) == 2 and logs[-1]["event"] == "release_reported"
    forge.answers = [403]
    with capture_logs() as logs:
        reporter.report(github_release(forge), incident_id=7, to_revision=3)
    assert len(forge.received) == 3
    assert (logs[-1]["event"], logs[-1]["status"]) == ("release_report_failed", 403)


def test_nothing_is_sent_without_the_forges_token_or_to_another_forge(forge: Forge) -> None:
    only_gitlab = ReleaseSettings(gitlab_token="gl-token")
    reporter = ForgeReporter(only_gitlab, link=link)
    assert reporter.request(github_release(forge), incident_id=1, to_revision=1) is None
    plain = Release(workload=CART, at=github_release(forge).at, source=ReleaseSource.PLAIN)
    assert ForgeReporter(SETTINGS, link=link).request(plain, incident_id=1, to_revision=1) is None


def test_a_forge_that_is_down_is_logged_and_never_raises() -> None:
    down = Release(
        workload=CART,
        at=load_scenario("bad-release").start,
        source=ReleaseSource.GITHUB,
        report_url="http://127.0.0.1:9/repos/shop/cart/deployments/1/statuses",
    )
    with capture_logs() as logs:
        ForgeReporter(SETTINGS, link=link).report(down, incident_id=1, to_revision=1)
    assert logs[-1]["event"] == "release_report_failed"


def test_the_loop_reports_its_rollback_to_github(forge: Forge, tmp_path: Path) -> None:
    scenario = load_scenario("bad-release")
    settings = load_settings(
        None,
        guards={"mode": "auto"},
        playbooks_dir=str(REPO / "playbooks"),
        api={"public_url": "https://healer.example"},
        releases={"github_token": "gh-token"},
    )
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    harness = SimHarness.start(scenario, settings=settings, store=store, workdir=tmp_path)
    try:
        release = github_release(forge)
        store.record_release(release, known=True, sender="github", at=release.at)
        harness.run_for(3600)
        [incident] = [s for s in store.list_incidents() if s.workload == CART]
        [sent] = forge.wait(1)
        assert sent["path"] == "/repos/shop/cart/deployments/145/statuses"
        assert sent["body"]["state"] == "failure"
        assert sent["body"]["log_url"] == f"https://healer.example/incidents/{incident.id}"
    finally:
        harness.close()
        store.close()
