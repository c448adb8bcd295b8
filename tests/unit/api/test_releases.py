"""``POST /api/v1/releases``: GitLab, GitHub, Argo CD and plain bodies through
fastapi.testclient, on a store on a tmp_path SQLite file; and the incident page's
release markers.

The forge payloads are the events' documented shapes, trimmed of fields healer does
not read only where the docs mark them optional; unknown fields are left in to show
that a forge adding fields breaks nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import hash_token
from healer.audit import AuditStore
from healer.config import Settings
from healer.types import (
    Direction,
    Finding,
    Frame,
    Release,
    ReleaseSource,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

CART = WorkloadRef("shop", "Deployment", "cart")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OPERATOR, VIEWER, PIPELINE = "operator-token", "viewer-token", "jenkins-token"
GITLAB_SECRET, GITHUB_SECRET = "gitlab-hook-secret", "github-hook-secret"
SETTINGS = Settings(
    api={
        "tokens": [
            {"name": "olga", "role": "operator", "sha256": hash_token(OPERATOR)},
            {"name": "vic", "role": "viewer", "sha256": hash_token(VIEWER)},
        ]
    },
    releases={
        "tokens": [{"name": "jenkins", "sha256": hash_token(PIPELINE)}],
        "github_secret": GITHUB_SECRET,
        "gitlab_tokens": [{"name": "gitlab-shop", "sha256": hash_token(GITLAB_SECRET)}],
    },
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    watched = frozenset({CART})
    app = create_app(store=store, settings=SETTINGS, clock=lambda: NOW, watched=lambda: watched)
    with TestClient(app) as c:
        yield c


def stored(store: AuditStore, workload: WorkloadRef = CART) -> list[Release]:
    day = timedelta(days=365)
    return [s.release for s in store.releases_of(workload, since=NOW - day, until=NOW + day)]


# --- plain ----------------------------------------------------------------------------

PLAIN = {
    "workload": "shop/cart",
    "image": "registry.example/shop/cart:3f9a2c1",
    "revision": "v1.8.0",
    "commit": "3f9a2c1d0e4b5a6978877665544332211aabbccd",
    "author": "ada",
    "pipeline": "shop-cart-deploy",
    "pipeline_url": "https://jenkins.example/job/shop-cart-deploy/412/",
}


def test_a_plain_release_from_a_pipeline_token_is_stored_and_known(
    client: TestClient, store: AuditStore
) -> None:
    answer = client.post("/api/v1/releases", json=PLAIN, headers=bearer(PIPELINE))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["known"] is True and body["workload"] == "shop/Deployment/cart"
    assert body["source"] == "plain" and body["at"].startswith("2026-03-02T12:00:00")
    [release] = stored(store)
    assert release.image == PLAIN["image"] and release.author == "ada"
    assert release.pipeline_url == PLAIN["pipeline_url"] and release.at == NOW


def test_an_operator_token_may_post_a_viewer_token_may_not(
    client: TestClient, store: AuditStore
) -> None:
    assert client.post("/api/v1/releases", json=PLAIN, headers=bearer(OPERATOR)).status_code == 202
    refused = client.post("/api/v1/releases", json=PLAIN, headers=bearer(VIEWER))
    assert refused.status_code == 403 and "viewer" in refused.text
    assert len(stored(store)) == 1


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic eDp5"}])
def test_a_wrong_or_missing_token_is_401_and_nothing_is_stored(
    client: TestClient, store: AuditStore, headers: dict[str, str]
) -> None:
    answer = client.post("/api/v1/releases", json=PLAIN, headers=headers)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert stored(store) == []


def test_an_unknown_workload_is_stored_and_answered_unknown(
    client: TestClient, store: AuditStore
) -> None:
    other = WorkloadRef("web", "StatefulSet", "ledger")
    body = {**PLAIN, "workload": "web/StatefulSet/ledger"}
    answer = client.post("/api/v1/releases", json=body, headers=bearer(PIPELINE))
    assert answer.status_code == 202 and answer.json()["known"] is False
    assert [r.workload for r in stored(store, other)] == [other]


def test_without_a_daemon_beside_it_the_api_cannot_tell_known(store: AuditStore) -> None:
    with TestClient(create_app(store=store, settings=SETTINGS)) as c:
        answer = c.post("/api/v1/releases", json=PLAIN, headers=bearer(PIPELINE))
    assert answer.status_code == 202 and answer.json()["known"] is None


@pytest.mark.parametrize(
    ("body", "params", "field"),
    [
        ({**PLAIN, "workload": None}, {}, "workload"),
        ({**PLAIN, "workload": "Shop/cart"}, {}, "workload"),
        (PLAIN, {"workload": "cart"}, "workload"),
        ({"workload": "shop/cart"}, {}, "revision or image"),
        ({**PLAIN, "comitt": "x"}, {}, "comitt"),
        ({**PLAIN, "at": "2026-03-02T12:00:00"}, {}, "at"),
    ],
)
def test_bad_plain_bodies_are_422_naming_the_field(
    client: TestClient,
    store: AuditStore,
    body: dict[str, Any],
    params: dict[str, str],
    field: str,
) -> None:
    answer = client.post("/api/v1/releases", json=body, params=params, headers=bearer(PIPELINE))
    assert answer.status_code == 422 and field in answer.text, answer.text
    assert stored(store) == []


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    answer = client.post("/api/v1/releases", content=b"{not json", headers=bearer(PIPELINE))
    assert answer.status_code == 400 and "not JSON" in answer.text


# --- GitLab ---------------------------------------------------------------------------


def gitlab_deployment(status: str = "success", environment: str = "shop/cart") -> dict[str, Any]:
    """A deployment event as GitLab's webhook documentation shows it."""
    return {
        "object_kind": "deployment",
        "status": status,
        "status_changed_at": "2026-03-02 12:58:00 +0100",
        "deployment_id": 15,
        "deployable_id": 796,
        "deployable_url": "https://gitlab.example/shop/cart/-/jobs/796",
        "environment": environment,
        "environment_tier": "production",
        "environment_slug": "shop-cart",
        "environment_external_url": "https://shop.example",
        "project": {
            "id": 30,
            "name": "cart",
            "description": "",
            "web_url": "https://gitlab.example/shop/cart",
            "avatar_url": None,
            "git_ssh_url": "git@gitlab.example:shop/cart.git",
            "git_http_url": "https://gitlab.example/shop/cart.git",
            "namespace": "shop",
            "visibility_level": 0,
            "path_with_namespace": "shop/cart",
            "default_branch": "main",
            "ci_config_path": "",
            "homepage": "https://gitlab.example/shop/cart",
            "url": "git@gitlab.example:shop/cart.git",
            "ssh_url": "git@gitlab.example:shop/cart.git",
            "http_url": "https://gitlab.example/shop/cart.git",
        },
        "short_sha": "c1c67abb",
        "user": {
            "id": 1,
            "name": "Grace Hopper",
            "username": "grace",
            "avatar_url": "https://gitlab.example/avatar.png",
            "email": "[REDACTED]",
        },
        "user_url": "https://gitlab.example/grace",
        "commit_url": "https://gitlab.example/shop/cart/-/commit/"
        "c1c67abbaf91f624d1c7b1a8f5fcd5aec4b4e4d0",
        "commit_title": "Cache the basket totals",
    }


def test_a_gitlab_deployment_event_with_its_token(client: TestClient, store: AuditStore) -> None:
    headers = {"X-Gitlab-Token": GITLAB_SECRET, "X-Gitlab-Event": "Deployment Hook"}
    answer = client.post("/api/v1/releases", json=gitlab_deployment(), headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["source"] == "gitlab" and answer.json()["known"] is True
    [release] = stored(store)
    assert release.commit == "c1c67abbaf91f624d1c7b1a8f5fcd5aec4b4e4d0"
    assert (release.author, release.pipeline) == ("grace", "shop/cart")
    assert release.pipeline_url == "https://gitlab.example/shop/cart/-/jobs/796"
    assert release.at == datetime(2026, 3, 2, 11, 58, tzinfo=UTC)  # +0100 read as such
    assert release.status == "success"
    assert release.report_url == (
        "https://gitlab.example/api/v4/projects/30/repository/commits/"
        "c1c67abbaf91f624d1c7b1a8f5fcd5aec4b4e4d0/comments"
    )


def test_gitlab_names_the_workload_by_query_when_its_environment_does_not(
    client: TestClient, store: AuditStore
) -> None:
    headers = {"X-Gitlab-Token": GITLAB_SECRET}
    event = gitlab_deployment(environment="production")
    missing = client.post("/api/v1/releases", json=event, headers=headers)
    assert missing.status_code == 422 and "?workload=" in missing.text
    named = client.post(
        "/api/v1/releases", json=event, headers=headers, params={"workload": "shop/cart"}
    )
    assert named.status_code == 202 and stored(store)[0].environment == "production"


def test_a_wrong_gitlab_token_is_401_and_nothing_is_stored(
    client: TestClient, store: AuditStore
) -> None:
    headers = {"X-Gitlab-Token": "guessed"}
    answer = client.post("/api/v1/releases", json=gitlab_deployment(), headers=headers)
    assert answer.status_code == 401 and "X-Gitlab-Token" in answer.text
    assert stored(store) == []


def test_another_gitlab_event_is_422_naming_object_kind(client: TestClient) -> None:
    event = {**gitlab_deployment(), "object_kind": "pipeline"}
    answer = client.post("/api/v1/releases", json=event, headers={"X-Gitlab-Token": GITLAB_SECRET})
    assert answer.status_code == 422 and "object_kind" in answer.text


# --- GitHub ---------------------------------------------------------------------------


def github_deployment_status(state: str = "success") -> dict[str, Any]:
    """A ``deployment_status`` event as GitHub's webhook documentation shows it."""
    user = {"login": "linus", "id": 21031067, "type": "User", "site_admin": False}
    return {
        "action": "created",
        "deployment_status": {
            "url": "https://api.github.com/repos/shop/cart/deployments/145/statuses/1",
            "id": 1,
            "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx",
            "state": state,
            "creator": user,
            "description": "",
            "environment": "production",
            "target_url": "",
            "log_url": "https://github.com/shop/cart/actions/runs/42",
            "created_at": "2026-03-02T11:59:30Z",
            "updated_at": "2026-03-02T11:59:30Z",
            "deployment_url": "https://api.github.com/repos/shop/cart/deployments/145",
            "repository_url": "https://api.github.com/repos/shop/cart",
        },
        "deployment": {
            "url": "https://api.github.com/repos/shop/cart/deployments/145",
            "id": 145,
            "node_id": "MDEwOkRlcGxveW1lbnQxNDU=",
            "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
            "ref": "main",
            "task": "deploy",
            "payload": {"workload": "shop/cart", "image": "ghcr.io/shop/cart:a84d88e"},
            "original_environment": "production",
            "environment": "production",
            "description": None,
            "creator": user,
            "created_at": "2026-03-02T11:58:00Z",
            "updated_at": "2026-03-02T11:59:30Z",
            "statuses_url": "https://api.github.com/repos/shop/cart/deployments/145/statuses",
            "repository_url": "https://api.github.com/repos/shop/cart",
        },
        "repository": {
            "id": 35129377,
            "name": "cart",
            "full_name": "shop/cart",
            "private": False,
            "html_url": "https://github.com/shop/cart",
        },
        "sender": user,
    }


def signed(body: bytes, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }


def test_a_signed_github_deployment_status_is_stored(client: TestClient, store: AuditStore) -> None:
    raw = json.dumps(github_deployment_status()).encode()
    answer = client.post("/api/v1/releases", content=raw, headers=signed(raw))
    assert answer.status_code == 202, answer.text
    [release] = stored(store)
    assert release.source is ReleaseSource.GITHUB
    assert release.commit == "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d"
    assert (release.author, release.pipeline) == ("linus", "shop/cart")
    assert release.image == "ghcr.io/shop/cart:a84d88e"
    assert release.pipeline_url == "https://github.com/shop/cart/actions/runs/42"
    assert release.at == datetime(2026, 3, 2, 11, 59, 30, tzinfo=UTC)
    assert release.report_url == "https://api.github.com/repos/shop/cart/deployments/145/statuses"


@pytest.mark.parametrize("forgery", ["other secret", "altered body", "no prefix", "not ascii"])
def test_a_forged_github_signature_is_401_and_nothing_is_stored(
    client: TestClient, store: AuditStore, forgery: str
) -> None:
    raw = json.dumps(github_deployment_status()).encode()
    headers = signed(raw, "other secret" if forgery == "other secret" else GITHUB_SECRET)
    if forgery == "altered body":
        raw = raw.replace(b"linus", b"mallory")
    elif forgery == "no prefix":
        headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    elif forgery == "not ascii":
        headers["X-Hub-Signature-256"] = "sha256=é".encode()  # type: ignore[assignment] # raw bytes on the wire
    # A valid operator token does not rescue a forged signature.
    answer = client.post("/api/v1/releases", content=raw, headers={**headers, **bearer(OPERATOR)})
    assert answer.status_code == 401 and "X-Hub-Signature-256" in answer.text
    assert stored(store) == []


def test_github_deliveries_are_refused_without_a_configured_secret(store: AuditStore) -> None:
    raw = json.dumps(github_deployment_status()).encode()
    with TestClient(create_app(store=store, settings=Settings())) as c:
        answer = c.post("/api/v1/releases", content=raw, headers=signed(raw))
    assert answer.status_code == 401 and "github_secret" in answer.text
    assert stored(store) == []


def test_another_github_event_is_422(client: TestClient, store: AuditStore) -> None:
    raw = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    headers = {**signed(raw), "X-GitHub-Event": "ping"}
    answer = client.post("/api/v1/releases", content=raw, headers=headers)
    assert answer.status_code == 422 and "deployment_status" in answer.text
    assert stored(store) == []


# --- Argo CD --------------------------------------------------------------------------


def argocd_notification() -> dict[str, Any]:
    """The body ``docs/releases.md``'s argocd-notifications template renders."""
    return {
        "app": "cart",
        "revision": "9d1e5c0b7a3f2e4d6c8b0a1f3e5d7c9b1a3f5e7d",
        "syncStatus": "Synced",
        "healthStatus": "Healthy",
        "repoURL": "https://git.example/shop/deploy.git",
        "namespace": "shop",
        "argocdUrl": "https://argocd.example",
        "finishedAt": "2026-03-02T11:59:00Z",
        "author": "Ken Thompson <ken@example.com>",
    }


def test_an_argocd_notification_names_its_app_in_its_namespace(
    client: TestClient, store: AuditStore
) -> None:
    answer = client.post("/api/v1/releases", json=argocd_notification(), headers=bearer(PIPELINE))
    assert answer.status_code == 202, answer.text
    assert answer.json()["source"] == "argocd" and answer.json()["known"] is True
    [release] = stored(store)
    assert release.commit == "9d1e5c0b7a3f2e4d6c8b0a1f3e5d7c9b1a3f5e7d"
    assert release.pipeline_url == "https://argocd.example/applications/cart"
    assert release.status == "Synced" and release.at == datetime(2026, 3, 2, 11, 59, tzinfo=UTC)


def test_an_argocd_body_with_a_misspelt_field_is_422(client: TestClient) -> None:
    body = {**argocd_notification(), "sync_status": "Synced"}
    answer = client.post("/api/v1/releases", json=body, headers=bearer(PIPELINE))
    assert answer.status_code == 422 and "sync_status" in answer.text


# --- The incident page ----------------------------------------------------------------


def test_the_incident_page_marks_the_release_on_its_chart_and_timeline(
    client: TestClient, store: AuditStore
) -> None:
    found_at = NOW + timedelta(minutes=10)
    times = np.arange(0, 3600, 15, dtype=np.float64) + found_at.timestamp() - 3585
    values = np.full((1, 1, len(times)), 0.002)
    values[0, 0, -40:] = 0.05
    frame = Frame(times, (CART,), (Signal.ERROR_RATIO,), values)
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.05, 0.002, 21.0, Direction.UP)
    finding = Finding(CART, found_at, 0.99, (errors,), found_at - timedelta(minutes=8), "m/1")
    incident = store.open_incident(finding, frame=frame)
    old = {**PLAIN, "revision": "v1.7.0", "at": "2026-03-02T10:00:00Z"}  # before the lookback
    for body in (old, PLAIN):
        assert client.post("/api/v1/releases", json=body, headers=bearer(PIPELINE)).is_success
    login = client.post("/login", data={"token": OPERATOR}, follow_redirects=False)
    assert login.status_code == 303
    page = client.get(f"/incidents/{incident}").text
    assert (
        '<line class="marker m-release"' in page
        and "<title>release v1.8.0 (registry.example/shop/cart:3f9a2c1) by ada via plain</title>"
        in page
    )
    assert '<span class="kind">release</span>' in page
    assert 'href="https://jenkins.example/job/shop-cart-deploy/412/"' in page
    assert "v1.7.0" not in page  # two hours before the onset: not this incident's story
    # The release step comes before the finding, which it preceded.
    assert page.index('<span class="kind">release</span>') < page.index(
        '<span class="kind">finding</span>'
    )


def test_a_link_that_is_not_http_is_shown_as_text(client: TestClient, store: AuditStore) -> None:
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.05, 0.002, 21.0, Direction.UP)
    incident = store.open_incident(Finding(CART, NOW, 0.99, (errors,), NOW, "m/1"))
    body = {**PLAIN, "pipeline_url": "javascript:alert(1)"}
    assert client.post("/api/v1/releases", json=body, headers=bearer(PIPELINE)).is_success
    client.post("/login", data={"token": OPERATOR})
    page = client.get(f"/incidents/{incident}").text
    assert "javascript:alert(1)" in page and 'href="javascript:' not in page
