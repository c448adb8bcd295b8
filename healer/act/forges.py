"""Reporting a rollback back to the forge that told of the release.

When healer rolls back a release that GitHub or GitLab told it of (``POST
/api/v1/releases``), the people watching the pipeline hear of it where they look:

- **GitHub**: a deployment status ``failure`` on the deployment (``POST`` to its
  ``statuses_url``, REST API 2022-11-28), its description saying what healer did and
  its ``log_url`` the incident's page;
- **GitLab**: a comment on the release's commit (``POST /api/v4/projects/:id/
  repository/commits/:sha/comments``, a ``note``), with the same words and link.

Decisions:

- The report is sent beside the cycle, in a thread of its own (``ForgeReporter.submit``):
  a forge that is slow or down must not hold the loop that heals. Rollbacks are rare
  (guards rate-limit them), so one short-lived thread each is cheap; its outcome is
  logged (``release_reported`` or ``release_report_failed``), the incident's own record
  of the rollback being the action it already has.
- One attempt and one retry after a network error, a 429 or a 5xx: a report is a
  courtesy, not an action; a 4xx (a token without the right scope, a deployment gone)
  is logged with the forge's answer and not retried.
- Only URLs healer built from the forge's own event are used, and only with the token
  of that forge: a GitHub token is never sent to a GitLab URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from healer.config import ReleaseSettings
from healer.errors import TransientActionError
from healer.types import JsonObject, Release, ReleaseSource

log = structlog.get_logger("healer.act.forges")

GITHUB_DESCRIPTION_CHARS = 140
"""GitHub refuses a deployment status description longer than 140 characters."""


@dataclass(frozen=True)
class ForgeRequest:
    url: str
    headers: dict[str, str]
    body: JsonObject


class ForgeReporter:
    """Posts rollback reports to GitHub and GitLab with the tokens of ``releases``."""

    def __init__(
        self,
        settings: ReleaseSettings,
        *,
        link: Callable[[int], str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._link = link
        self._transport = transport

    def request(
        self, release: Release, *, incident_id: int, to_revision: int
    ) -> ForgeRequest | None:
        """The report for ``release``, or None when there is nowhere or no token to send it."""
        what = (
            f"healer rolled back {release.workload.namespace}/{release.workload.name} "
            f"to revision {to_revision}"
        )
        link = self._link(incident_id)
        url = release.report_url
        github, gitlab = self._settings.github_token, self._settings.gitlab_token
        if release.source is ReleaseSource.GITHUB and github and url:
            headers = {
                "Authorization": f"Bearer {github.get_secret_value()}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            description = f"{what}: the release was unhealthy"[:GITHUB_DESCRIPTION_CHARS]
            body: JsonObject = {"state": "failure", "description": description}
            if link.startswith(("https://", "http://")):
                body["log_url"] = link
            return ForgeRequest(url, headers, body)
        if release.source is ReleaseSource.GITLAB and gitlab and url:
            headers = {"PRIVATE-TOKEN": gitlab.get_secret_value()}
            note = f"{what}: the release of this commit was unhealthy. See {link}."
            return ForgeRequest(url, headers, {"note": note})
        return None

    def send(self, request: ForgeRequest) -> int:
        """POST the report; the forge's status code. TransientActionError after the retry."""
        timeout = self._settings.report_timeout_s
        with httpx.Client(timeout=timeout, transport=self._transport) as client:
            for attempt in (1, 2):
                try:
                    answer = client.post(request.url, headers=request.headers, json=request.body)
                except httpx.HTTPError as exc:
                    if attempt == 2:
                        raise TransientActionError(f"{request.url}: {exc}") from exc
                    continue
                if (answer.status_code == 429 or answer.status_code >= 500) and attempt == 1:
                    continue
                return answer.status_code
        raise AssertionError("unreachable: the second attempt returns or raises")

    def report(self, release: Release, *, incident_id: int, to_revision: int) -> None:
        """Build and send the report, logging how it went; never raises."""
        request = self.request(release, incident_id=incident_id, to_revision=to_revision)
        if request is None:
            return
        where = dict(incident_id=incident_id, forge=release.source.value, url=request.url)
        try:
            status = self.send(request)
        except TransientActionError as exc:
            log.warning("release_report_failed", error=str(exc), **where)
            return
        if 200 <= status < 300:
            log.info("release_reported", status=status, **where)
        else:
            log.warning("release_report_failed", status=status, **where)

    def submit(self, release: Release, *, incident_id: int, to_revision: int) -> threading.Thread:
        """``report`` in a thread of its own, started; returned so tests can join it."""
        thread = threading.Thread(
            target=self.report,
            args=(release,),
            kwargs={"incident_id": incident_id, "to_revision": to_revision},
            name=f"release-report-{incident_id}",
            daemon=True,
        )
        thread.start()
        return thread
