"""What stands between the network and the routes: security headers, the review page's
session cookie, login throttling, body limits and short 422 answers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import COOKIE, Sessions, hash_token
from healer.api.hardening import CSP, LoginThrottle
from healer.audit import AuditStore
from healer.config import ApiToken, Settings

OPERATOR = "operator-token"
ENTRY = ApiToken(name="olga", role="operator", sha256=hash_token(OPERATOR))
SETTINGS = Settings(api={"tokens": [ENTRY], "login_failures": 3, "max_body_bytes": 4096})


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=SETTINGS)) as c:
        yield c


def login(client: TestClient, token: str = OPERATOR, **headers: str) -> object:
    return client.post("/login", data={"token": token}, headers=headers, follow_redirects=False)


# ---- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/", "/healthz", "/api/v1/incidents"])
def test_every_answer_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path, follow_redirects=False).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == CSP
    assert "script-src 'sha256-" in CSP and "default-src 'none'" in CSP
    assert "'unsafe-inline'" not in CSP and "connect-src 'self'" in CSP


@pytest.mark.parametrize("tag", ["style", "script"])
def test_the_csp_allows_exactly_the_pages_own_style_and_script(
    client: TestClient, tag: str
) -> None:
    import base64
    import hashlib

    page = client.get("/login").text
    block = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    assert block is not None
    digest = base64.b64encode(hashlib.sha256(block.group(1).encode()).digest()).decode()
    assert f"{tag}-src 'sha256-{digest}'" in CSP


def test_the_docs_keep_their_script(client: TestClient) -> None:
    headers = client.get("/docs").headers
    assert "content-security-policy" not in headers
    assert headers["x-frame-options"] == "DENY"


# ---- the session cookie -------------------------------------------------------------------


def test_the_cookie_holds_a_session_not_the_token(client: TestClient) -> None:
    answer = login(client)
    cookie = answer.headers["set-cookie"]  # type: ignore[attr-defined]
    assert cookie.startswith(f"{COOKIE}=")
    assert OPERATOR not in cookie and hash_token(OPERATOR) not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert client.get("/", follow_redirects=False).status_code == 200


def test_the_cookie_is_secure_over_tls(store: AuditStore) -> None:
    app = create_app(store=store, settings=SETTINGS)
    with TestClient(app, base_url="https://healer.example") as c:
        assert "Secure" in login(c).headers["set-cookie"]  # type: ignore[attr-defined]


def test_the_cookie_is_secure_behind_a_proxy_that_says_https(client: TestClient) -> None:
    answer = login(client, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in answer.headers["set-cookie"]  # type: ignore[attr-defined]


def test_the_raw_token_as_a_cookie_is_not_a_session(store: AuditStore) -> None:
    with TestClient(create_app(store=store, settings=SETTINGS), cookies={COOKIE: OPERATOR}) as c:
        assert c.get("/", follow_redirects=False).status_code == 303  # to the login form


def test_a_session_is_signed_expires_and_ends_with_its_token() -> None:
    wall = [1_000.0]
    sessions = Sessions([ENTRY], key=b"k" * 32, ttl_s=60, wall=lambda: wall[0])
    cookie = sessions.issue(OPERATOR)
    assert cookie is not None and sessions.issue("guess") is None
    found = sessions.find(cookie)
    assert found is not None and found.name == "olga"
    token_id, expires, mac = cookie.split(".")
    assert sessions.find(f"{token_id}.{int(expires) + 9999}.{mac}") is None  # tampered
    assert Sessions([ENTRY], key=b"j" * 32).find(cookie) is None  # another key
    assert Sessions([], key=b"k" * 32, wall=lambda: wall[0]).find(cookie) is None  # revoked
    assert sessions.find(f"{token_id}.{expires}.é") is None  # not ASCII: refused, no error
    wall[0] += 61
    assert sessions.find(cookie) is None  # expired


# ---- login throttling ---------------------------------------------------------------------


def test_failed_logins_are_throttled_per_client_with_retry_after(client: TestClient) -> None:
    for _ in range(3):
        assert login(client, "guess").status_code == 401  # type: ignore[attr-defined]
    refused = login(client, "guess")
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert 1 <= int(refused.headers["retry-after"]) <= 60  # type: ignore[attr-defined]
    # The right token still logs in: one person's wrong guesses behind a shared proxy
    # address do not lock everybody else out.
    assert login(client).status_code == 303  # type: ignore[attr-defined]
    assert login(client, "guess").status_code == 429  # type: ignore[attr-defined]


def test_the_throttle_forgets_failures_after_its_window() -> None:
    clock = [0.0]
    throttle = LoginThrottle(failures=2, window_s=60, clock=lambda: clock[0])
    throttle.failed("10.0.0.1")
    clock[0] = 20
    throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 40
    assert throttle.retry_after_s("10.0.0.2") is None  # per client
    clock[0] = 60
    assert throttle.retry_after_s("10.0.0.1") is None


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = LoginThrottle(failures=1, window_s=60, clock=lambda: 0.0)
    for n in range(LoginThrottle.MAX_CLIENTS + 5):
        throttle.failed(f"client-{n}")
    assert throttle.retry_after_s("client-0") is None  # forgotten first
    assert throttle.retry_after_s(f"client-{LoginThrottle.MAX_CLIENTS + 4}") == 60


# ---- bodies -------------------------------------------------------------------------------


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1024  # no Content-Length: counted as it arrives

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = client.post("/login", content=chunks(), headers=form)
    assert answer.status_code == 413
    assert "api.max_body_bytes" in answer.json()["detail"]


def test_a_declared_length_over_the_limit_is_413_on_the_page_too(client: TestClient) -> None:
    answer = client.post("/login", data={"token": "x" * 5000})
    assert answer.status_code == 413


def test_the_page_does_not_echo_a_long_form_value_whole(client: TestClient) -> None:
    login(client)
    answer = client.post(
        "/incidents/1/feedback", data={"verdict": "true_positive", "cause": "x" * 3000}
    )
    assert answer.status_code == 422
    assert "(3000 characters)" in answer.text and len(answer.content) < 1000
