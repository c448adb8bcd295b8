"""Credentials reach git through GIT_ASKPASS from a file and nowhere else: not argv,
not the environment, not a log line, not an error."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from healer.gitops.owner import GitSource
from healer.gitops.pins import Change
from healer.gitops.repo import GitCommandError, Redactor
from healer.gitops.rollback import GitRollback, Story
from tests.unit.gitops.gitrepos import settings

TOKEN = "ghp_s3cret-token-value"
STORY = Story(1, "Deployment shop/cart", "bad_release", "errors.", "score 0.9", None)


class _Refusing(BaseHTTPRequestHandler):
    """A Git smart-HTTP endpoint that asks for Basic credentials and refuses them all,
    noting what it was sent."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # http.server's name
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def refusing() -> Iterator[str]:
    _Refusing.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/shop/deploy.git"
    server.shutdown()
    server.server_close()


def test_refused_credentials_escalate_and_the_token_is_never_shown(
    tmp_path: Path, refusing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    calls: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: Any) -> Any:  # records, then runs git for real
        calls.append((list(args), dict(kwargs.get("env") or {})))
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    rollback = GitRollback(settings(tmp_path, token_file=token_file, username="bot"))
    source = GitSource(url=refusing, revision="main", path=".")
    with capture_logs() as logs, pytest.raises(GitCommandError) as caught:
        rollback.land(source, (Change("a:1", "a:0"),), STORY, tool="Argo CD")
    assert caught.value.kind == "auth"
    assert "Authentication failed" in str(caught.value)
    sent = base64.b64encode(f"bot:{TOKEN}".encode()).decode()
    assert f"Basic {sent}" in _Refusing.seen  # askpass handed git the file's token
    assert calls and all(TOKEN not in " ".join(argv) for argv, _ in calls)
    assert all(TOKEN not in " ".join(env.values()) for _, env in calls)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(logs)


def test_a_password_in_the_url_is_masked_in_errors_and_logs(tmp_path: Path) -> None:
    url = "http://deployer:hunter2-pass@127.0.0.1:9/shop/deploy.git"  # port 9: discard
    rollback = GitRollback(settings(tmp_path, timeout_s=20))
    with capture_logs() as logs, pytest.raises(GitCommandError) as caught:
        rollback.land(GitSource(url, "main", "."), (Change("a:1", "a:0"),), STORY, tool="Flux")
    assert caught.value.kind == "unreachable"
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(logs)
    assert "127.0.0.1 port 9" in str(caught.value)


def test_the_redactor_masks_known_secrets_and_url_user_info() -> None:
    redact = Redactor()
    redact.add("tok-1\n")
    said = redact("push https://x:tok-1@host/r.git and ssh://git@host/r with tok-1")
    assert said == "push https://***@host/r.git and ssh://***@host/r with ***"


def test_an_unreadable_token_file_names_the_setting(tmp_path: Path) -> None:
    rollback = GitRollback(settings(tmp_path, token_file=tmp_path / "missing"))
    source = GitSource("file:///nowhere.git", "main", ".")
    with pytest.raises(GitCommandError, match=r"gitops.token_file .*missing: cannot read"):
        rollback.land(source, (Change("a:1", "a:0"),), STORY, tool="Flux")
