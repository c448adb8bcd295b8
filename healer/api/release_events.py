"""The bodies a release arrives in, each turned into one ``healer.types.Release``.

Four senders, four shapes:

- **GitLab** deployment events (``object_kind: deployment``, header ``X-Gitlab-Event:
  Deployment Hook``): the job's link, the environment, the commit, the user.
- **GitHub** ``deployment_status`` events (header ``X-GitHub-Event``): the deployment's
  sha, ref, creator and payload, the status' state and log link.
- **Argo CD** notifications: argocd-notifications has no fixed webhook body, its
  template writes one. healer reads the fields the catalog's ``app-deployed`` template
  shows (application name, sync status, repository, sync revision) plus the health
  status, the destination namespace and the Argo CD URL, under the names in
  ``ArgoCdNotification``; ``docs/releases.md`` has the template that sends them.
- **Plain** JSON for a Jenkinsfile or any script: ``{workload, revision | image,
  commit, author, pipeline, pipeline_url, environment, status, at}``.

Which workload: the ``workload`` query parameter (``namespace/name`` or
``namespace/Kind/name``) names it for any sender, since a forge's event knows the
repository, not the Deployment. Without it: the plain body's ``workload``, a GitHub
deployment's ``payload.workload``, a GitLab environment named ``namespace/name``, and
an Argo CD application's name in its destination namespace.

Decisions:

- The forges' bodies are read with unknown fields ignored, unlike every other body of
  the API: GitLab and GitHub add fields to their events without notice, and a webhook
  that broke on a forge upgrade would be a pipeline's outage. The fields healer reads
  are validated, and their absence is a 422 naming them. The plain body and the Argo
  CD body, whose shape the user writes from our docs, forbid unknown fields, so a typo
  is caught on the first try.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from healer.types import Release, ReleaseSource, WorkloadRef

Short = Annotated[str, Field(max_length=255)]
Link = Annotated[str, Field(max_length=2048)]
WORKLOAD_PATTERN = re.compile(
    r"^(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/((?P<kind>Deployment|StatefulSet|DaemonSet)/)?"
    r"(?P<name>[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$"
)
"""``namespace/name`` (a Deployment) or ``namespace/Kind/name``, with Kubernetes' name rules."""


class WorkloadError(ValueError):
    """No workload could be named from the request; the message says how to name one."""


def parse_workload(text: str) -> WorkloadRef:
    """``namespace/name`` or ``namespace/Kind/name``; ValueError naming the shape otherwise."""
    found = WORKLOAD_PATTERN.match(text)
    if found is None or len(found["ns"]) > 63 or len(found["name"]) > 253:
        raise ValueError(f"{text!r} is not namespace/name or namespace/Kind/name")
    return WorkloadRef(found["ns"], found["kind"] or "Deployment", found["name"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Forge(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _utc(value: datetime | None, fallback: datetime) -> datetime:
    return value.astimezone(UTC) if value is not None else fallback


# --- Plain ----------------------------------------------------------------------------


class PlainRelease(_Strict):
    """The plain body: what a Jenkinsfile or a script knows of its release."""

    workload: Short | None = None
    """``namespace/name`` or ``namespace/Kind/name``; or the ``workload`` query parameter."""
    revision: Short = ""
    image: Link = ""
    commit: Short = ""
    author: Short = ""
    pipeline: Short = ""
    pipeline_url: Link = ""
    environment: Short = ""
    status: Short = ""
    at: AwareDatetime | None = None
    """When it was released; the time of receipt when left out."""

    def release(self, workload: WorkloadRef | None, received: datetime) -> Release:
        if not (self.revision or self.image):
            raise WorkloadError("a plain release needs revision or image")
        return Release(
            workload=_named(workload, self.workload, "the body's workload"),
            at=_utc(self.at, received),
            source=ReleaseSource.PLAIN,
            revision=self.revision,
            image=self.image,
            commit=self.commit,
            author=self.author,
            pipeline=self.pipeline,
            pipeline_url=self.pipeline_url,
            environment=self.environment,
            status=self.status,
        )


# --- GitLab ---------------------------------------------------------------------------


class _GitLabProject(_Forge):
    id: int | None = None
    path_with_namespace: Short = ""
    web_url: Link = ""

    def comments_url(self, sha: str) -> str:
        """The commit's comments in GitLab's REST API (v4), where a rollback is noted."""
        origin = re.match(r"^(https?://[^/]+)", self.web_url)
        if origin is None or self.id is None or not re.fullmatch(r"[0-9a-f]{40}", sha):
            return ""
        return f"{origin[1]}/api/v4/projects/{self.id}/repository/commits/{sha}/comments"


class _GitLabUser(_Forge):
    username: Short = ""
    name: Short = ""


class GitLabDeployment(_Forge):
    """GitLab's deployment event (Settings > Webhooks > Deployment events)."""

    object_kind: Literal["deployment"]
    status: Short
    """``running``, ``success``, ``failed`` or ``canceled``."""
    status_changed_at: Short = ""
    """``2021-04-28 21:50:00 +0200``: GitLab's own format, not ISO 8601."""
    deployment_id: int | None = None
    deployable_url: Link = ""
    environment: Short = ""
    project: _GitLabProject = _GitLabProject()
    short_sha: Short = ""
    user: _GitLabUser = _GitLabUser()
    commit_url: Link = ""
    commit_title: Annotated[str, Field(max_length=4096)] = ""

    def release(self, workload: WorkloadRef | None, received: datetime) -> Release:
        named = self.environment if WORKLOAD_PATTERN.match(self.environment) else None
        commit = self.commit_url.rstrip("/").rpartition("/")[2] or self.short_sha
        return Release(
            workload=_named(workload, named, "an environment named namespace/name"),
            at=_gitlab_time(self.status_changed_at) or received,
            source=ReleaseSource.GITLAB,
            revision=self.short_sha,
            commit=commit,
            author=self.user.username or self.user.name,
            pipeline=self.project.path_with_namespace,
            pipeline_url=self.deployable_url,
            environment=self.environment,
            status=self.status,
            report_url=self.project.comments_url(commit),
        )


def _gitlab_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").astimezone(UTC)
    except ValueError:
        return None


# --- GitHub ---------------------------------------------------------------------------


class _GitHubUser(_Forge):
    login: Short = ""


class _GitHubStatus(_Forge):
    state: Short
    """``pending``, ``in_progress``, ``queued``, ``success``, ``failure``, ``error`` ..."""
    environment: Short = ""
    target_url: Link | None = ""
    log_url: Link | None = ""
    updated_at: AwareDatetime | None = None
    creator: _GitHubUser | None = None


class _GitHubDeployment(_Forge):
    id: int | None = None
    sha: Short
    ref: Short = ""
    environment: Short = ""
    payload: dict[str, Any] | str = {}
    """What the deployment's creator attached: ``{"workload": ..., "image": ...}``
    names the workload and the image when the pipeline puts them there."""
    creator: _GitHubUser | None = None
    statuses_url: Link = ""
    """Where the deployment's statuses are posted: a rollback is reported there."""


class _GitHubRepository(_Forge):
    full_name: Short = ""
    html_url: Link = ""


class _GitHubRun(_Forge):
    name: Short = ""
    html_url: Link = ""


class GitHubDeploymentStatus(_Forge):
    """GitHub's ``deployment_status`` webhook event."""

    action: Short = "created"
    deployment_status: _GitHubStatus
    deployment: _GitHubDeployment
    repository: _GitHubRepository = _GitHubRepository()
    workflow_run: _GitHubRun | None = None

    def release(self, workload: WorkloadRef | None, received: datetime) -> Release:
        status, deployment = self.deployment_status, self.deployment
        extra = deployment.payload if isinstance(deployment.payload, dict) else {}
        named, image = extra.get("workload"), extra.get("image")
        run = self.workflow_run
        link = status.log_url or status.target_url or (run.html_url if run else "")
        creator = deployment.creator or status.creator
        return Release(
            workload=_named(workload, named if isinstance(named, str) else None, _GITHUB_HINT),
            at=_utc(status.updated_at, received),
            source=ReleaseSource.GITHUB,
            revision=deployment.ref or deployment.sha,
            image=image if isinstance(image, str) else "",
            commit=deployment.sha,
            author=creator.login if creator else "",
            pipeline=(run.name if run and run.name else self.repository.full_name),
            pipeline_url=link or "",
            environment=status.environment or deployment.environment,
            status=status.state,
            report_url=deployment.statuses_url,
        )


_GITHUB_HINT = "the deployment's payload.workload"


# --- Argo CD --------------------------------------------------------------------------


class ArgoCdNotification(_Strict):
    """The body of healer's Argo CD notification template (``docs/releases.md``)."""

    app: Short
    """``{{.app.metadata.name}}``"""
    revision: Short = ""
    """``{{.app.status.sync.revision}}``: the Git commit synced."""
    sync_status: Short = Field(default="", alias="syncStatus")
    """``{{.app.status.sync.status}}``: ``Synced``, ``OutOfSync``, ``Unknown``."""
    health_status: Short = Field(default="", alias="healthStatus")
    """``{{.app.status.health.status}}``"""
    repo_url: Link = Field(default="", alias="repoURL")
    """``{{.app.spec.source.repoURL}}``"""
    namespace: Short = ""
    """``{{.app.spec.destination.namespace}}``"""
    argocd_url: Link = Field(default="", alias="argocdUrl")
    """``{{.context.argocdUrl}}``"""
    finished_at: AwareDatetime | None = Field(default=None, alias="finishedAt")
    """``{{.app.status.operationState.finishedAt}}``"""
    author: Short = ""
    """Optional: the commit's author, from the template's ``repo.GetCommitMetadata``."""

    def release(self, workload: WorkloadRef | None, received: datetime) -> Release:
        guessed = f"{self.namespace}/{self.app}" if self.namespace else None
        link = f"{self.argocd_url.rstrip('/')}/applications/{self.app}" if self.argocd_url else ""
        return Release(
            workload=_named(workload, guessed, "the template's namespace"),
            at=_utc(self.finished_at, received),
            source=ReleaseSource.ARGOCD,
            revision=self.revision,
            commit=self.revision,
            author=self.author,
            pipeline=self.app,
            pipeline_url=link,
            environment=self.repo_url,
            status=self.sync_status,
        )


def _named(given: WorkloadRef | None, named: str | None, where: str) -> WorkloadRef:
    if given is not None:
        return given
    if named:
        try:
            return parse_workload(named)
        except ValueError as exc:
            raise WorkloadError(f"{where}: {exc}") from exc
    raise WorkloadError(
        f"no workload named: add ?workload=namespace/name to the webhook's URL, or {where}"
    )


Body = PlainRelease | GitLabDeployment | GitHubDeploymentStatus | ArgoCdNotification


def shape_of(data: object, *, github_event: str | None) -> type[Body]:
    """Which shape a parsed body is: GitHub by its header, GitLab by ``object_kind``,
    Argo CD by ``app``, else plain."""
    if github_event is not None:
        return GitHubDeploymentStatus
    if isinstance(data, dict) and "object_kind" in data:
        return GitLabDeployment
    if isinstance(data, dict) and "app" in data:
        return ArgoCdNotification
    return PlainRelease


def parse(data: object, *, github_event: str | None) -> Body:
    """The body validated in its shape; pydantic's ValidationError names the field."""
    if github_event not in (None, "deployment_status"):
        raise WorkloadError(f"GitHub event {github_event!r}: send deployment_status events only")
    shape = shape_of(data, github_event=github_event)
    return shape.model_validate(data)


__all__ = [
    "ArgoCdNotification",
    "Body",
    "GitHubDeploymentStatus",
    "GitLabDeployment",
    "PlainRelease",
    "ValidationError",
    "WorkloadError",
    "parse",
    "parse_workload",
]
