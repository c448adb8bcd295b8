"""The ``git`` CLI, with credentials that never reach a command line or a log.

Every git command healer runs goes through ``Git.run``: a list of arguments, no shell,
a timeout, ``LC_ALL=C`` so that its messages can be matched, and no terminal prompt
(``GIT_TERMINAL_PROMPT=0``: a missing credential fails at once instead of hanging the
cycle). A token comes from a file (a mounted Secret): git asks for it through
``GIT_ASKPASS``, a small script that reads the file itself, so the token is neither in
argv (which ``ps`` shows) nor in the environment nor in the remote URL.

Decisions:

- One ``Redactor`` masks every secret healer knows of (the token file's content, the
  user info of a URL) in whatever it logs or raises: git echoes remote URLs in its
  errors, and a URL may carry ``user:password@``. Logging goes through ``GitLog``, which
  redacts every string it is given, so no call site can forget.
- A failure is a ``GitCommandError`` (a ``PermanentActionError``: the incident escalates
  with git's own words, redacted); ``kind`` says which failure it is when healer must
  tell them apart: ``auth`` (credentials refused), ``unreachable``, ``rejected`` (a push
  that is not a fast-forward), ``conflict`` (a rebase that stopped).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog

from healer.errors import PermanentActionError

log = structlog.get_logger("healer.gitops")

MASK = "***"
MESSAGE_LINES = 6
"""Lines of git's own message kept in an error: its fatal line and the hints before it,
not a whole transcript."""
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)

ASKPASS = """#!/bin/sh
# Answers git's credential prompts from files named in the environment; never echoes
# the token anywhere else.
case "$1" in
  Username*) printf '%s\\n' "$HEALER_GIT_USERNAME" ;;
  *) cat "$HEALER_GIT_TOKEN_FILE" ;;
esac
"""

FailureKind = Literal["auth", "unreachable", "rejected", "conflict", "other"]

_AUTH = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied",
    "access denied",
    "403",
    "401",
    "invalid username or password",
)
_UNREACHABLE = (
    "could not resolve host",
    "does not appear to be a git repository",
    "repository not found",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "unable to access",
    "not found",
)


class GitCommandError(PermanentActionError):
    """A git command that failed; its message is redacted."""

    def __init__(self, message: str, *, kind: FailureKind) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Redactor:
    """Masks known secrets, and the user info of any URL, in text."""

    secrets: set[str] = field(default_factory=set)

    def add(self, secret: str) -> None:
        if secret.strip():
            self.secrets.add(secret.strip())

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


@dataclass(frozen=True)
class GitLog:
    """A logger whose every string value (event data included) is redacted first."""

    redact: Redactor

    def info(self, event: str, **data: object) -> None:
        log.info(event, **self._clean(data))

    def warning(self, event: str, **data: object) -> None:
        log.warning(event, **self._clean(data))

    def _clean(self, data: Mapping[str, object]) -> dict[str, object]:
        return {k: self.redact(v) if isinstance(v, str) else v for k, v in data.items()}


@dataclass(frozen=True)
class Identity:
    """Who commits: ``user.name`` and ``user.email`` of healer's commits."""

    name: str
    email: str


def _classify(stderr: str) -> FailureKind:
    low = stderr.lower()
    if "[rejected]" in low or "non-fast-forward" in low or "fetch first" in low:
        return "rejected"
    if "conflict" in low or "could not apply" in low:
        return "conflict"
    if any(marker in low for marker in _AUTH):
        return "auth"
    if any(marker in low for marker in _UNREACHABLE):
        return "unreachable"
    return "other"


class Git:
    """Runs git in ``cwd`` with healer's environment; see the module docstring."""

    def __init__(
        self,
        cwd: Path,
        *,
        identity: Identity,
        token_file: Path | None,
        username: str,
        askpass_dir: Path,
        timeout_s: float,
        redact: Redactor | None = None,
    ) -> None:
        self.cwd = cwd
        self.redact = redact or Redactor()
        self.log = GitLog(self.redact)
        self._timeout_s = timeout_s
        self._env = self._environment(identity, token_file, username, askpass_dir)

    def _environment(
        self, identity: Identity, token_file: Path | None, username: str, askpass_dir: Path
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            LC_ALL="C",
            GIT_TERMINAL_PROMPT="0",
            GIT_AUTHOR_NAME=identity.name,
            GIT_AUTHOR_EMAIL=identity.email,
            GIT_COMMITTER_NAME=identity.name,
            GIT_COMMITTER_EMAIL=identity.email,
        )
        if token_file is not None:
            try:
                self.redact.add(token_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise GitCommandError(
                    f"gitops.token_file {token_file}: cannot read: {exc.strerror}", kind="auth"
                ) from exc
            env.update(
                GIT_ASKPASS=str(_askpass(askpass_dir)),
                HEALER_GIT_TOKEN_FILE=str(token_file.resolve()),
                HEALER_GIT_USERNAME=username,
            )
        return env

    def run(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        """git's stdout; ``GitCommandError`` (redacted) when it fails and ``check``."""
        done = self.attempt(args, input_text=input_text)
        if check and done.returncode != 0:
            raise self.error(args, done)
        return done.stdout

    def attempt(
        self, args: Sequence[str], *, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run and return whatever happened; only a timeout or a missing git raises."""
        try:
            return subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=self._env,
                input=input_text,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            what = self.redact(" ".join(args[:2]))
            raise GitCommandError(
                f"git {what} took longer than gitops.timeout_s ({self._timeout_s:g}s)",
                kind="unreachable",
            ) from exc
        except OSError as exc:
            raise GitCommandError(f"git cannot run: {exc}", kind="other") from exc

    def error(self, args: Sequence[str], done: subprocess.CompletedProcess[str]) -> GitCommandError:
        said = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
        kept = [line for line in said if line and not line.startswith("hint:")]
        text = self.redact(" / ".join(kept[-MESSAGE_LINES:]) or f"exit {done.returncode}")
        kind = _classify(done.stderr + done.stdout)
        self.log.warning("git_failed", command=" ".join(args[:2]), kind=kind, error=text)
        return GitCommandError(f"git {self.redact(args[0])}: {text}", kind=kind)


def _askpass(directory: Path) -> Path:
    """The askpass script, written once, readable and runnable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "askpass.sh"
    if not script.exists() or script.read_text(encoding="utf-8") != ASKPASS:
        script.write_text(ASKPASS, encoding="utf-8")
    script.chmod(stat.S_IRWXU)
    return script
