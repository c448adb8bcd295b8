"""Building the GitOps actuator from the settings, for every entry point.

Decisions: the forge is built per repository (its project is the repository URL's
path unless ``gitops.forge_project`` names it), and its token is read from
``gitops.token_file`` when the forge is first needed, so that the token is read from
the mounted Secret as it is now, and a missing file fails the action that needed it,
naming the setting, rather than start-up.
"""

from __future__ import annotations

from collections.abc import Callable

from healer.config import GitOpsSettings, Settings
from healer.errors import PermanentActionError
from healer.gitops.actuator import Cluster, GitOpsActuator, Objects, Reviews
from healer.gitops.forge import Forge, GitHub, GitLab, project_of
from healer.gitops.repo import Redactor
from healer.gitops.rollback import GitRollback
from healer.types import Incident, WorkloadRef


def forges(settings: GitOpsSettings, redact: Redactor) -> Callable[[str], Forge | None]:
    """The forge of a repository URL, as the settings describe it."""

    def forge_of(url: str) -> Forge | None:
        if settings.forge == "none":
            return None
        token = _token(settings, redact)
        project = settings.forge_project or project_of(url)
        kind = GitHub if settings.forge == "github" else GitLab
        return kind(settings.forge_url, project, token, timeout_s=settings.timeout_s, redact=redact)

    return forge_of


def _token(settings: GitOpsSettings, redact: Redactor) -> str | None:
    if settings.token_file is None:
        return None
    try:
        token = settings.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PermanentActionError(
            f"gitops.token_file {settings.token_file}: cannot read: {exc.strerror}"
        ) from exc
    redact.add(token)
    return token


def open_incident_of(
    unresolved: Callable[[], list[Incident]],
) -> Callable[[WorkloadRef], Incident | None]:
    """The newest unresolved incident of a workload, from the store's open ones."""

    def incident_of(workload: WorkloadRef) -> Incident | None:
        mine = [i for i in unresolved() if i.workload == workload]
        return max(mine, key=lambda i: i.id, default=None)

    return incident_of


def gitops_actuator(
    cluster: Cluster,
    *,
    objects: Objects,
    settings: Settings,
    unresolved: Callable[[], list[Incident]],
    reviews: Reviews | None = None,
) -> GitOpsActuator:
    """``cluster`` wrapped so that rollbacks of GitOps-owned workloads land in Git;
    ``objects`` reads and annotates the syncers' objects
    (``healer.act.customobjects.CustomObjects`` on the same API client); ``reviews``
    (the audit store) lets a merge in the forge approve the pending action."""
    redact = Redactor()
    return GitOpsActuator(
        cluster,
        objects=objects,
        settings=settings.gitops,
        incident_of=open_incident_of(unresolved),
        link=settings.api.incident_link,
        git=GitRollback(settings.gitops, redact=redact),
        forges=forges(settings.gitops, redact),
        reviews=reviews,
    )
