"""Git repositories on disk, read and written with the ``git`` command line.

The simulated cluster's Git syncer (``healer.sim.controllers.gitsync``) reads a
revision of a repository as Argo CD's repo-server and Flux's source-controller do: it
resolves a branch, tag or commit to a commit id, then reads the files under a path at
that commit. A GitOps scenario's deploy pipeline writes: it makes the bare "remote" a
syncer reads, and commits to it through a clone of its own, as a CI job pushing a new
image tag does.

Decisions:

* The ``git`` binary, not a Python library: it is what Argo CD and Flux run (or
  reimplement faithfully), it reads bare and non-bare repositories alike, and any URL
  ``git`` understands works. Only local repositories (a path or a ``file://`` URL) are
  read: the simulator reaches no network.
* Every command runs with the user's and the system's configuration ignored and with a
  fixed identity, so what the simulator commits does not depend on the machine; commits
  carry the virtual clock's time, so a scenario's commits have the same ids on every run.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

GIT_TIMEOUT_S = 30.0
"""One git command on a local repository takes milliseconds; a hung one (a lock left by
a killed process) must not stall the cluster's tick forever."""

_IDENTITY = ("healer-sim deploy pipeline", "pipeline@healer-sim.invalid")


class GitError(Exception):
    """A git command failed; the message is git's own, first line first."""


def local_path(url: str) -> Path:
    """The directory a repository URL names: a ``file://`` URL or a plain path.

    Raises GitError for any other URL (``https://``, ``ssh://``, ``git@host:``), which
    the simulator cannot reach.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    raise GitError(
        f"repository {url!r} is not reachable from the simulated cluster: "
        "only file:// URLs and absolute paths are read"
    )


def _env(at: datetime | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in ("HOME", "XDG_CONFIG_HOME")
    }
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=_IDENTITY[0],
        GIT_AUTHOR_EMAIL=_IDENTITY[1],
        GIT_COMMITTER_NAME=_IDENTITY[0],
        GIT_COMMITTER_EMAIL=_IDENTITY[1],
    )
    if at is not None:
        stamp = f"@{int(at.timestamp())} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return env


def git(*args: str, cwd: Path, at: datetime | None = None, stdin: bytes | None = None) -> bytes:
    """Run ``git args`` in ``cwd``; its standard output. Raises GitError on failure."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_env(at),
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise GitError(message)
    return done.stdout


# ---- reading (the syncer) ----------------------------------------------------------------


def resolve(url: str, revision: str) -> str:
    """The commit id ``revision`` (a branch, a tag, a commit id, or ``HEAD``, the default
    when empty) names in the repository at ``url``."""
    path = local_path(url)
    if not path.is_dir():
        raise GitError(f"repository not found: {url}")
    wanted = revision or "HEAD"
    for candidate in (f"refs/heads/{wanted}", f"refs/tags/{wanted}", wanted):
        try:
            out = git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=path)
        except GitError:
            continue
        return out.decode().strip()
    raise GitError(f"unable to resolve {wanted!r} to a commit in {url}")


def read_tree(url: str, commit: str, path: str) -> dict[str, bytes]:
    """Every file under ``path`` at ``commit``, by its path relative to ``path``.

    Raises GitError when ``path`` does not exist at that commit.
    """
    repo = local_path(url)
    prefix = posixpath.normpath(path or ".").strip("/")
    prefix = "" if prefix == "." else prefix
    spec = f"{commit}:{prefix}" if prefix else f"{commit}:"
    try:
        found = git("cat-file", "-t", spec, cwd=repo).decode().strip()
    except GitError:
        found = ""
    if found != "tree":
        raise GitError(f"{path}: app path does not exist at {commit[:7]}")
    listing = git("ls-tree", "-r", "-z", "--name-only", commit, "--", prefix or ".", cwd=repo)
    names = [n for n in listing.decode().split("\0") if n]
    files = {}
    for name in names:
        relative = name[len(prefix) + 1 :] if prefix else name
        files[relative] = git("show", f"{commit}:{name}", cwd=repo)
    return files


# ---- writing (a scenario's deploy pipeline) ----------------------------------------------


def init_remote(remote: Path, work: Path, files: Mapping[str, str], *, at: datetime) -> str:
    """Make the bare repository ``remote`` with one commit of ``files`` on ``main``, and
    the clone ``work`` the pipeline commits from; the commit id."""
    remote.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=remote.parent)
    git("clone", "--quiet", str(remote), str(work), cwd=remote.parent)
    git("checkout", "--quiet", "-B", "main", cwd=work)
    return commit(work, files, "Initial release", at=at)


def commit(work: Path, files: Mapping[str, str | None], message: str, *, at: datetime) -> str:
    """Write ``files`` (relative paths; None removes one) in the clone ``work`` on top of
    the remote's ``main``, commit them and push; the new commit id.

    What others pushed meanwhile (a rollback by healer) is fetched first, and a push
    refused because someone pushed in between is tried again on top of theirs (three
    times in all): never a force-push.
    """
    refused: GitError | None = None
    for _ in range(_PUSH_TRIES):
        _catch_up(work)
        for name, text in files.items():
            target = work / name
            if text is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work, at=at)
        try:
            git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
        except GitError as exc:
            refused = exc
            continue
        return git("rev-parse", "HEAD", cwd=work).decode().strip()
    assert refused is not None
    raise refused


_PUSH_TRIES = 3


def _catch_up(work: Path) -> None:
    """Reset the clone to the remote's ``main``, when it has one."""
    if git("ls-remote", "origin", "refs/heads/main", cwd=work).strip():
        git("fetch", "--quiet", "origin", "main", cwd=work)
        git("reset", "--quiet", "--hard", "origin/main", cwd=work)


def read_file(work: Path, name: str) -> str:
    """A file of the pipeline's clone as the remote's ``main`` has it now."""
    _catch_up(work)
    return (work / name).read_text()
