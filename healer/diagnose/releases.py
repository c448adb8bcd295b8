"""Naming the release behind a bad-release diagnosis: pipeline, commit, author, link.

The rules (``rules.py``) blame the workload's current revision from the cluster alone.
When a pipeline, a forge or Argo CD told healer of that release (``POST
/api/v1/releases``), the diagnosis also says who shipped it and where to look, so the
person paged starts from the pipeline instead of from ``kubectl rollout history``.

Which stored release is the revision's:

1. one whose image is among the revision's images, or whose commit or revision is the
   tag of one of them (``shop/cart:3f9a2c1``): the same release, whenever it was told;
2. else the one told nearest in time to the revision's creation, within
   ``MATCH_WINDOW`` of it: a script that posts only a revision name is matched by time.

Decisions: a release that matches neither is not named, never guessed; a diagnosis
other than ``bad_release`` is returned as it came. Pure: the daemon reads the releases
from the store and passes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from healer.types import Cause, Diagnosis, Release, Revision, WorkloadState

MATCH_WINDOW = timedelta(minutes=10)
"""How far a release's time may be from the revision's creation and still be taken for
it: a pipeline posts within a minute or two of ``kubectl apply``, a GitOps sync a few
minutes after the commit; ten minutes covers both without reaching the release before."""


def matching(revision: Revision, releases: Sequence[Release]) -> Release | None:
    """The release that rolled out ``revision``, or None (see the module's doc)."""
    by_image = [r for r in releases if _same_image(r, revision)]
    if by_image:
        return by_image[-1]
    near = [r for r in releases if abs(r.at - revision.created) <= MATCH_WINDOW]
    return min(near, key=lambda r: abs(r.at - revision.created), default=None)


def _same_image(release: Release, revision: Revision) -> bool:
    tags = {image.rpartition(":")[2] for image in revision.images if ":" in image}
    named = {release.commit, release.revision, release.commit[:7], release.commit[:8]} - {""}
    return (bool(release.image) and release.image in revision.images) or bool(tags & named)


def with_release(
    diagnosis: Diagnosis, state: WorkloadState, releases: Sequence[Release]
) -> Diagnosis:
    """The diagnosis with the matching release named, when it blames a bad release."""
    current = state.current_revision
    if diagnosis.cause is not Cause.BAD_RELEASE or current is None:
        return diagnosis
    found = matching(current, releases)
    if found is None:
        return diagnosis
    return replace(diagnosis, explanation=f"{diagnosis.explanation} {describe(found)}")


def describe(release: Release) -> str:
    """One sentence: ``Released by pipeline shop/cart (commit 3f9a2c1 by ada): URL.``"""
    parts = [f"Released by {release.source.value} pipeline {release.pipeline or '(unnamed)'}"]
    who = []
    if release.commit:
        who.append(f"commit {release.commit[:12]}")
    if release.author:
        who.append(f"by {release.author}")
    if who:
        parts.append(f"({' '.join(who)})")
    text = " ".join(parts)
    return f"{text}: {release.pipeline_url}." if release.pipeline_url else f"{text}."
