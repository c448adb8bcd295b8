"""A GitOps scenario's repositories, owner objects and deploy pipeline.

At start (``GitOpsSetup.start``) each application of the scenario's ``gitops`` section
gets a bare repository with the manifests of its workloads as the cluster runs them, and
its owner objects: Argo CD's ``Application`` in ``argocd``, or Flux's ``GitRepository``
and ``Kustomization`` in ``flux-system``, pointing at ``file://<root>/<name>.git``. A
release event with ``via: git`` is the pipeline's commit of the new image
(``GitOpsSetup.release``); the syncer rolls it out when it next looks at Git.

Decisions:

* The manifests in Git are those the simulator creates the workloads from, so the
  cluster starts Synced and Healthy, and the physics of the workloads (their rows,
  their containers) stay the simulator's own.
* Commits carry the virtual clock's time and a fixed identity: a scenario's commits have
  the same ids on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from healer.errors import ConfigError
from healer.sim import daemonsets, deployments, statefulsets
from healer.sim.gitrender import split_image
from healer.sim.gitrepo import GitError, commit, git, init_remote, read_file
from healer.sim.objects import K8s
from healer.sim.scenario import Event, GitApp, GitOps, WorkloadSpec

ARGOCD_NAMESPACE = "argocd"
FLUX_NAMESPACE = "flux-system"
_MANIFESTS = {
    "Deployment": deployments.manifest,
    "StatefulSet": statefulsets.manifest,
    "DaemonSet": daemonsets.manifest,
}


class ObjectApi(Protocol):
    def create_object(self, resource: str, namespace: str, body: K8s, *, dry_run: bool) -> Any: ...


@dataclass(frozen=True)
class Repository:
    """Where one application's Git repository is: the bare remote (``url``, what the
    syncer reads and healer clones) and the pipeline's clone."""

    app: GitApp
    url: str
    remote: Path
    pipeline: Path

    @property
    def path(self) -> str:
        return f"apps/{self.app.name}"


class GitOpsSetup:
    """The repositories of one cluster's GitOps applications, by application name."""

    def __init__(self, gitops: GitOps, specs: list[WorkloadSpec], root: Path) -> None:
        self.gitops = gitops
        self.root = root
        self._specs = {f"{w.namespace}/{w.name}": w for w in specs}
        self.repositories: dict[str, Repository] = {}
        self._owner: dict[str, Repository] = {}

    def start(self, api: ObjectApi, *, at: Any) -> None:
        """Make every repository with its first commit, and the owner objects.

        A repository already under the root (a cluster started again on the same root)
        is kept with its history, commits pushed by others included: the syncer then
        applies what Git says, as a real one would after a restart. Raises ConfigError
        naming the repository when git fails.
        """
        for app in self.gitops.applications:
            remote = self.root / f"{app.name}.git"
            repo = Repository(app, remote.as_uri(), remote, self.root / f"{app.name}-pipeline")
            try:
                if not (remote / "HEAD").exists():
                    init_remote(remote, repo.pipeline, self._files(repo), at=at)
                elif not repo.pipeline.exists():
                    git("clone", "--quiet", str(remote), str(repo.pipeline), cwd=self.root)
            except (GitError, OSError) as exc:
                raise ConfigError(f"gitops repository {remote}: {exc}") from exc
            self.repositories[app.name] = repo
            for workload in app.workloads:
                self._owner[workload] = repo
            for resource, namespace, body in owner_objects(repo):
                api.create_object(resource, namespace, body, dry_run=False)

    def _files(self, repo: Repository) -> dict[str, str]:
        files = {}
        images = []
        for workload in repo.app.workloads:
            spec = self._specs[workload]
            manifest = _MANIFESTS[spec.kind](spec)
            if not repo.app.replicas_in_git:
                manifest["spec"].pop("replicas", None)
            files[f"{repo.path}/{spec.name}.yaml"] = yaml.safe_dump(manifest, sort_keys=False)
            name, tag, _ = split_image(spec.image)
            images.append({"name": name, "newTag": tag or "latest"})
        if repo.app.render == "kustomize":
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"{self._specs[w].name}.yaml" for w in repo.app.workloads],
                "images": images,
            }
            text = yaml.safe_dump(kustomization, sort_keys=False)
            files[f"{repo.path}/kustomization.yaml"] = text
        return files

    def owner_of(self, workload: str) -> Repository | None:
        return self._owner.get(workload)

    def release(self, event: Event, *, at: Any) -> str:
        """The deploy pipeline's commit of ``event.image`` for its workload; the commit id."""
        repo = self._owner[event.workload]
        spec = self._specs[event.workload]
        image = str(event.image)
        message = f"Release {spec.name} {image}"
        if repo.app.render == "kustomize":
            name = f"{repo.path}/kustomization.yaml"
            body = yaml.safe_load(read_file(repo.pipeline, name))
            old_name = split_image(spec.image)[0]
            new_name, tag, _ = split_image(image)
            for entry in body.get("images") or []:
                if entry.get("name") == old_name:
                    entry.pop("newName", None)
                    if new_name != old_name:
                        entry["newName"] = new_name
                    entry["newTag"] = tag or "latest"
            files = {name: yaml.safe_dump(body, sort_keys=False)}
        else:
            name = f"{repo.path}/{spec.name}.yaml"
            manifest = yaml.safe_load(read_file(repo.pipeline, name))
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            container["image"] = image
            files = {name: yaml.safe_dump(manifest, sort_keys=False)}
        return commit(repo.pipeline, files, message, at=at)


def owner_objects(repo: Repository) -> list[tuple[str, str, K8s]]:
    """(resource, namespace, body) of the objects that make ``repo``'s owner sync it."""
    app = repo.app
    if app.owner == "argocd":
        automated: Mapping[str, bool] = {"prune": app.prune, "selfHeal": app.self_heal}
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": app.name},
            "spec": {
                "project": "default",
                "source": {"repoURL": repo.url, "path": repo.path, "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc"},
                "syncPolicy": {"automated": dict(automated)},
            },
        }
        return [("applications", ARGOCD_NAMESPACE, body)]
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": app.name},
        "spec": {"interval": app.source_interval, "url": repo.url, "ref": {"branch": "main"}},
    }
    kustomization = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": app.name},
        "spec": {
            "interval": app.interval,
            "path": f"./{repo.path}",
            "prune": app.prune,
            "sourceRef": {"kind": "GitRepository", "name": app.name},
        },
    }
    return [
        ("gitrepositories", FLUX_NAMESPACE, source),
        ("kustomizations", FLUX_NAMESPACE, kustomization),
    ]
