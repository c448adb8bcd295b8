"""A rollback as a commit: pin the good image again, commit, push; never twice.

``GitRollback.land`` works in a clone kept under ``gitops.cache_dir`` (one per
repository URL, fetched before each use): it starts from the tracked branch as the
remote has it, looks for its own commit first, edits the pins (``healer.gitops.pins``)
or reverts the commit that introduced the bad image, commits with a message that tells
the incident, and pushes.

Decisions:

- Idempotent by trailers: a commit carrying ``Healer-Incident: N`` and
  ``Healer-Action: rollback`` on the branch pushed to means the work is done (by this
  process before a crash, or by another replica); it is reported, not made again.
- A revert when the commit that last touched the pinned files did nothing else than
  pin the bad image (its parent's files are exactly what the edit produces): the
  history then says plainly which change is undone. Otherwise a new commit with the
  edit.
- Never forced, never rewritten: a push the remote rejects as not a fast-forward
  (someone pushed meanwhile) is followed by one fetch and one rebase of healer's own
  commit onto theirs, and one more push. A rebase that stops on a conflict is aborted
  and the incident escalated with the files in conflict: the other change touched the
  same pin, and a person must choose. A second rejection escalates too.
- Nothing here touches the cluster: the caller undoes in the cluster (``undo_first``)
  only after ``land`` returned, so a failure leaves nothing that Git would revert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from healer.config import GitOpsSettings
from healer.errors import PermanentActionError
from healer.gitops.owner import GitSource
from healer.gitops.pins import Change, apply_edits, find_edits
from healer.gitops.repo import Git, GitCommandError, Identity, Redactor

INCIDENT_TRAILER = "Healer-Incident"
ACTION_TRAILER = "Healer-Action"
REMOTE = "origin"


@dataclass(frozen=True)
class Story:
    """What the commit message tells: the incident, in a person's words."""

    incident_id: int
    workload: str
    cause: str
    explanation: str
    evidence: str
    link: str | None


@dataclass(frozen=True)
class Landed:
    """A rollback commit on a branch of the remote."""

    commit: str
    branch: str
    """The branch it is on (the tracked one, or the pull request's)."""
    base: str
    """The tracked branch it rolls back."""
    files: tuple[str, ...]
    reverted: str | None
    """The commit reverted, when the rollback is a revert."""
    already: bool
    """Found there already (by its trailers), not made now."""
    rebased: bool = False
    """Rebased once onto a push that came in meanwhile."""


def message(story: Story, changes: Sequence[Change], *, tool: str, reverted: str | None) -> str:
    """The commit message: subject, the incident in words, the link, the trailers."""
    images = ", ".join(f"{c.bad} -> {c.good}" for c in changes)
    good = ", ".join(c.good for c in changes)
    lines = [
        f"Roll back {story.workload} to {good} (incident {story.incident_id})",
        "",
        f"healer found {story.workload} unhealthy after its image changed "
        f"({images}) and diagnosed {story.cause}: {story.explanation}",
        "",
        f"Evidence: {story.evidence}",
        "",
        f"This pins the image of the previous healthy revision again, in Git, so that "
        f"{tool} keeps the rollback instead of syncing the bad release back.",
    ]
    if reverted:
        lines += ["", f"This reverts commit {reverted}."]
    if story.link:
        lines += ["", f"Incident: {story.link}"]
    lines += ["", f"{INCIDENT_TRAILER}: {story.incident_id}", f"{ACTION_TRAILER}: rollback"]
    return "\n".join(lines) + "\n"


class GitRollback:
    """Lands rollback commits; one instance serves every repository."""

    def __init__(self, settings: GitOpsSettings, *, redact: Redactor | None = None) -> None:
        self._settings = settings
        self.redact = redact or Redactor()

    def git(self, cwd: Path) -> Git:
        s = self._settings
        return Git(
            cwd,
            identity=Identity(s.committer_name, s.committer_email),
            token_file=s.token_file,
            username=s.username,
            askpass_dir=s.cache_dir,
            timeout_s=s.timeout_s,
            redact=self.redact,
        )

    def checkout(self, url: str) -> Git:
        """The cached clone of ``url``, fetched now; cloned on first use."""
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        where = self._settings.cache_dir / "repos" / key
        if not (where / ".git").is_dir():
            where.parent.mkdir(parents=True, exist_ok=True)
            self.git(where.parent).run("clone", "--quiet", "--no-checkout", url, where.name)
        git = self.git(where)
        git.run("fetch", "--quiet", "--prune", REMOTE)
        git.run("remote", "set-head", REMOTE, "--auto", check=False)
        return git

    def branch_of(self, git: Git, source: GitSource) -> str:
        """The branch the syncer follows: ``HEAD`` is the remote's default branch."""
        if source.revision in ("HEAD", ""):
            head = git.run("symbolic-ref", "--quiet", f"refs/remotes/{REMOTE}/HEAD").strip()
            return head.removeprefix(f"refs/remotes/{REMOTE}/")
        branch = source.revision.removeprefix("refs/heads/")
        if not _exists(git, f"refs/remotes/{REMOTE}/{branch}"):
            raise PermanentActionError(
                f"{self.redact(source.url)}: revision {source.revision!r} is not a branch "
                "(a tag or a commit): a commit cannot move it"
            )
        return branch

    def land(
        self,
        source: GitSource,
        changes: Sequence[Change],
        story: Story,
        *,
        tool: str,
        branch: str | None = None,
    ) -> Landed:
        """Commit the rollback and push it to ``branch`` (default: the tracked branch,
        which it then starts from too); see the module docstring for idempotence,
        reverts, rejected pushes and conflicts."""
        git = self.checkout(source.url)
        base = self.branch_of(git, source)
        target = branch or base
        found = self.find_own(git, story.incident_id, (target, base))
        if found is not None:
            return Landed(found[0], found[1], base, (), None, already=True)
        start = target if branch and _exists(git, f"refs/remotes/{REMOTE}/{target}") else base
        git.run("checkout", "--quiet", "--force", "-B", "healer-work", f"{REMOTE}/{start}")
        git.run("clean", "--quiet", "-fdx")
        files, reverted = self._change(git, source.path, changes)
        git.run(
            "commit",
            "--quiet",
            "--file=-",
            input_text=message(story, changes, tool=tool, reverted=reverted),
        )
        rebased = self._push(git, target, story.incident_id)
        if rebased is None:  # another replica's push of this very rollback came first
            theirs = self.find_own(git, story.incident_id, (target,))
            assert theirs is not None  # _push returns None only when it found it
            return Landed(theirs[0], target, base, (), None, already=True)
        commit = git.run("rev-parse", "HEAD").strip()
        git.log.info("gitops_committed", commit=commit, branch=target, url=source.url)
        return Landed(commit, target, base, files, reverted, already=False, rebased=rebased)

    def find_own(
        self, git: Git, incident_id: int, branches: Sequence[str]
    ) -> tuple[str, str] | None:
        """Healer's rollback commit for the incident on one of ``branches``, by its
        trailers: (commit, branch), or None."""
        for name in dict.fromkeys(branches):
            ref = f"refs/remotes/{REMOTE}/{name}"
            if not _exists(git, ref):
                continue
            out = git.run(
                "log", "--format=%H", "--all-match", "--max-count=1",
                f"--grep=^{INCIDENT_TRAILER}: {incident_id}$",
                f"--grep=^{ACTION_TRAILER}: rollback$", ref,
            ).strip()  # fmt: skip
            if out:
                return out, name
        return None

    def _change(
        self, git: Git, path: str, changes: Sequence[Change]
    ) -> tuple[tuple[str, ...], str | None]:
        """Edit the pins, or revert the commit that only introduced them; the files
        changed and the commit reverted."""
        edits = find_edits(git.cwd, path, changes)
        files = apply_edits(git.cwd, edits)
        culprit = self._only_pinned(git, files)
        git.run("checkout", "--quiet", "--", *files)  # back to HEAD; then edit or revert
        if culprit is not None:
            git.run("revert", "--no-commit", culprit)
            return files, culprit
        apply_edits(git.cwd, edits)
        git.run("add", "--", *files)
        return files, None

    def _only_pinned(self, git: Git, files: Sequence[str]) -> str | None:
        """The commit that last touched ``files``, when it touched nothing else and its
        parent has them exactly as the edit left them; None otherwise."""
        last = git.run("log", "--format=%H %P", "--max-count=1", "--", *files).split()
        if len(last) != 2:  # the root commit, or a merge: not a revert's case
            return None
        commit, parent = last
        touched = git.run("diff-tree", "--no-commit-id", "--name-only", "-r", commit).split()
        if sorted(touched) != sorted(files):
            return None
        same = git.attempt(["diff", "--quiet", parent, "--", *files])
        return commit if same.returncode == 0 else None

    def _push(self, git: Git, branch: str, incident_id: int) -> bool | None:
        """Push without force; once, after a rejection, fetch and rebase and push again.
        True when it rebased; None when the push that came first was this rollback's
        own (another replica's), which is then not pushed a second time."""
        if self._pushed(git, branch):
            return False
        git.run("fetch", "--quiet", REMOTE)
        if self.find_own(git, incident_id, (branch,)) is not None:
            return None
        done = git.attempt(["rebase", f"{REMOTE}/{branch}"])
        if done.returncode != 0:
            conflicted = git.run("diff", "--name-only", "--diff-filter=U").split()
            git.run("rebase", "--abort", check=False)
            raise GitCommandError(
                f"someone pushed to {branch} meanwhile and their change conflicts with the "
                f"rollback in {', '.join(conflicted) or 'the pinned files'}: a person must "
                "choose which image to keep",
                kind="conflict",
            )
        if not self._pushed(git, branch):
            raise GitCommandError(
                f"the push to {branch} was rejected again after a rebase: the branch "
                "moves too fast, or is protected",
                kind="rejected",
            )
        return True

    def _pushed(self, git: Git, branch: str) -> bool:
        """Push HEAD to ``branch``; False when rejected as not a fast-forward."""
        args = ["push", "--porcelain", REMOTE, f"HEAD:refs/heads/{branch}"]
        done = git.attempt(args)
        if done.returncode == 0:
            return True
        error = git.error(args, done)
        rejected = any(line.startswith("!") for line in done.stdout.splitlines())
        if rejected and error.kind in ("rejected", "other"):
            return False
        raise error


def _exists(git: Git, ref: str) -> bool:
    return git.attempt(["rev-parse", "--verify", "--quiet", ref]).returncode == 0
