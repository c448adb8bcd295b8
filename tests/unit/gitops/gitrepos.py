"""Real git repositories on disk for the GitOps tests: a bare remote and people's clones.

Every helper runs the ``git`` CLI, so what the tests check is what git itself did.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from healer.config import GitOpsSettings

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


class Person:
    """Someone with a clone of the remote, committing and pushing as people do."""

    def __init__(self, remote: Path, where: Path) -> None:
        git(where.parent, "clone", "--quiet", str(remote), where.name)
        self.dir = where

    def commit(self, files: dict[str, str], message: str) -> str:
        git(self.dir, "pull", "--quiet", "--rebase")
        for name, text in files.items():
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        git(self.dir, "add", "-A")
        git(self.dir, "commit", "--quiet", "-m", message)
        git(self.dir, "push", "--quiet", "origin", "HEAD")
        return git(self.dir, "rev-parse", "HEAD").strip()


def make_remote(tmp_path: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A bare repository whose ``branch`` holds ``files`` in one commit."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", f"--initial-branch={branch}", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "--quiet", f"--initial-branch={branch}", str(seed))
    for name, text in files.items():
        path = seed / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(seed, "add", "-A")
    git(seed, "commit", "--quiet", "-m", "Initial manifests")
    git(seed, "remote", "add", "origin", str(remote))
    git(seed, "push", "--quiet", "origin", branch)
    return remote


def head(remote: Path, branch: str = "main") -> str:
    return git(remote, "rev-parse", f"refs/heads/{branch}").strip()


def count(remote: Path, branch: str = "main") -> int:
    return int(git(remote, "rev-list", "--count", f"refs/heads/{branch}").strip())


def settings(tmp_path: Path, **changes: object) -> GitOpsSettings:
    fields: dict[str, object] = {
        "enabled": True,
        "cache_dir": tmp_path / "cache",
        "committer_name": "healer",
        "committer_email": "healer@example.com",
        "timeout_s": 30,
    }
    return GitOpsSettings.model_validate({**fields, **changes})


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: shop
spec:
  replicas: 3
  template:
    spec:
      containers:
        # the shop's cart service
        - name: cart
          image: shop/cart:{tag}
          ports:
            - containerPort: 8080
"""
