"""A forge whose successful answer is not the JSON asked for: the action fails with a
PermanentActionError naming the call, not with a ValueError out of the action.

A proxy's login page answered 200, or another API behind the configured URL, is what a
user meets when ``gitops.forge.url`` is wrong; the incident must say which call got what.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from healer.errors import PermanentActionError
from healer.gitops import forge
from healer.gitops.forge import GitHub, GitLab
from healer.gitops.repo import Redactor


def _answering(
    monkeypatch: pytest.MonkeyPatch, status: int, body: bytes, content_type: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    def client(base_url: str, headers: dict[str, str], timeout_s: float) -> httpx.Client:
        return httpx.Client(
            base_url=base_url, headers=headers, transport=httpx.MockTransport(handler)
        )

    monkeypatch.setattr(forge, "_client", client)


def _github() -> GitHub:
    return GitHub(
        "https://forge.test", "shop/deploy", "s3cret", timeout_s=1, redact=Redactor({"s3cret"})
    )


def _gitlab() -> GitLab:
    return GitLab(
        "https://forge.test", "shop/deploy", "s3cret", timeout_s=1, redact=Redactor({"s3cret"})
    )


CALLS: dict[str, Callable[[], object]] = {
    "GET /repos/shop/deploy/pulls/7": lambda: _github().get(7),
    "GET /repos/shop/deploy/pulls": lambda: _github().find("healer/incident-7"),
    "PATCH /repos/shop/deploy/pulls/7": lambda: _github().close(7),
    "GET /projects/shop%2Fdeploy/merge_requests/7": lambda: _gitlab().get(7),
    "PUT /projects/shop%2Fdeploy/merge_requests/7/merge": lambda: _gitlab().merge(7),
    "GET /projects/shop%2Fdeploy/merge_requests": lambda: _gitlab().find("healer/incident-7"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_login_page_answered_200_names_the_call(
    monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    _answering(monkeypatch, 200, b"<html><body>Sign in</body></html>", "text/html")
    with pytest.raises(PermanentActionError) as raised:
        CALLS[call]()
    message = str(raised.value)
    assert message.startswith(call + ":"), message
    assert "not the expected JSON" in message
    assert "Sign in" in message


@pytest.mark.parametrize(
    ("make", "body"),
    [(_github, b'{"state": "open"}'), (_gitlab, b'{"state": "opened"}')],
    ids=["github", "gitlab"],
)
def test_json_without_the_request_number_names_the_missing_field(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], GitHub | GitLab], body: bytes
) -> None:
    _answering(monkeypatch, 200, body, "application/json")
    with pytest.raises(PermanentActionError, match=r"KeyError: '(number|iid)'"):
        make().get(3)


def test_opening_reads_the_created_request_or_names_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _answering(monkeypatch, 201, b"created", "text/plain")
    with pytest.raises(PermanentActionError, match=r"^POST /repos/shop/deploy/pulls: .*'created'"):
        _github().open(head="healer/incident-7", base="main", title="t", body="b")
