"""The Git syncer: Argo CD's application controller and Flux's source and kustomize
controllers, reconciling the cluster from Git repositories on disk.

**Argo CD** (``Application``): the repository is polled every ``argocd_poll_s`` (Argo
CD's ``timeout.reconciliation``, 180 s by default), or at once when the Application is
created, its spec changes, or it carries ``argocd.argoproj.io/refresh`` (``hard`` or
``normal``; the annotation is removed once the refresh is done, as Argo CD does). The
path is rendered (``healer.sim.gitrender``) and compared with the live objects: a live
object is in sync when every field the manifest sets has the manifest's value (fields
the server defaulted, or that others set and Git does not, are not drift). With
``syncPolicy.automated`` a new revision is synced once; with ``selfHeal: true`` drift on
the live objects (a ``kubectl rollout undo``) is reverted ``argocd_self_heal_delay_s``
after it is seen (Argo CD's ``--self-heal-timeout-seconds``, 5 s by default), so at the
tick after it. ``status.sync``, ``status.health`` (from the workloads' rollouts, by Argo
CD's rules: Healthy, Progressing, Degraded, Missing), ``status.resources``,
``status.operationState`` and ``status.history`` follow, and each sync posts the Events
``OperationStarted`` and ``OperationCompleted`` on the Application. A refresh finds a new
commit at once but, as in Argo CD, syncs only a revision not tried yet (or drift under
self-heal). With ``prune: true`` what left Git is deleted; without, it is listed with
``requiresPruning``. ``ignoreDifferences`` (``jsonPointers``) hides fields from the
comparison, and from the sync too with the sync option
``RespectIgnoreDifferences=true``. A repository, path or manifest that cannot be read is a
``ComparisonError`` condition; an object the server refuses, a ``SyncError`` with the
server's message, kept until a sync succeeds.

**Flux** (``GitRepository`` and ``Kustomization``): each reconciles every
``spec.interval``, or at once when ``reconcile.fluxcd.io/requestedAt`` differs from
``status.lastHandledReconcileAt`` (which then records it). A Kustomization also follows
its source's new revision at once, as Flux's watch does, and applies its path at every
reconcile, so drift is corrected at its interval. Objects it applies carry
``kustomize.toolkit.fluxcd.io/name`` and ``/namespace`` (a ``Progressing`` Event lists
what changed); Argo CD's carry the label ``app.kubernetes.io/instance`` and the
annotation ``argocd.argoproj.io/tracking-id``.

The syncer runs in every tick and in the reaction to every API write (so a refresh
request is served before the write returns); reading, rendering and applying are
``healer.sim.gitsource``'s, the status fields ``healer.sim.gitstatus``'s.

Decisions:

* Writes to workloads go through the cluster's API verbs (a merge patch of the manifest,
  or a create), as the real controllers' applies go through the API server: the
  Deployment controller then rolls out what changed in the same tick.
* The syncer draws nothing from the cluster's random stream except through the objects
  it creates, so a cluster without GitOps objects runs exactly as before.
* A pass over an Application whose object and live objects kept their resourceVersions
  since its last pass, with no poll due and no drift waiting, is skipped: a day of
  ticks costs almost nothing.
* Lists in manifests are compared position by position (a container list of the same
  length, each entry a subset), not merged by key as a server-side apply would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from healer.sim import gitsource
from healer.sim.gitrender import RenderError
from healer.sim.gitrepo import GitError, resolve
from healer.sim.gitsource import (
    ARGO_REFRESH,
    FLUX_REQUESTED,
    Fetched,
    SyncApi,
    Target,
)
from healer.sim.gitstatus import (
    announce,
    condition,
    event,
    health,
    images,
    parse_duration,
    ready,
    record_history,
    worst,
    write_status,
)
from healer.sim.kinds import KINDS
from healer.sim.objects import ApiError, K8s, copy_json, rfc3339
from healer.sim.state import ClusterState, Now

_IN_CLUSTER = (None, "", "https://kubernetes.default.svc")
# A spec field of the wrong shape (a string where an object belongs) that the kinds'
# checks let through: the owner shows it in its status, and the others go on.
_SHAPE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


@dataclass(frozen=True)
class SyncTimings:
    """How often the syncers look at Git, virtual seconds (their real defaults)."""

    argocd_poll_s: float = 180.0
    argocd_self_heal_delay_s: float = 5.0


@dataclass
class GitSync:
    """The syncer; one instance per cluster, in its tick and in its write reactions."""

    api: SyncApi
    timings: SyncTimings = SyncTimings()
    fetched: dict[str, Fetched] = field(default_factory=dict)
    """Per owner uid (Application, GitRepository, Kustomization)."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for resource, step in (
            ("applications", self._application),
            ("gitrepositories", self._git_repository),
            ("kustomizations", self._kustomization),
        ):
            for obj in state.store.list(resource):
                try:
                    step(state, obj, now)
                except _SHAPE_ERRORS as exc:
                    _unreadable(state, resource, obj, exc, now)

    # ---- Argo CD ---------------------------------------------------------------------

    def _application(self, state: ClusterState, app: K8s, now: Now) -> None:
        meta, spec = app["metadata"], app["spec"]
        before = self.fetched.get(meta["uid"])
        refresh = (meta.get("annotations") or {}).get(ARGO_REFRESH)
        due = (
            before is None
            or before.generation != meta["generation"]
            or refresh is not None
            or now.unix_s >= before.polled_s + self.timings.argocd_poll_s
        )
        quiet = not due and before is not None and before.drift_s is None
        if quiet and before is not None and before.seen == _signature(state, app):
            return  # nothing it compares has changed since its last pass
        status = copy_json(app.get("status") or {})
        if due or before is None:
            source = spec.get("source") or {}
            fetched = gitsource.fetch(
                before,
                meta["generation"],
                now,
                url=str(source.get("repoURL", "")),
                ref=str(source.get("targetRevision") or "HEAD"),
                path=str(source.get("path") or ""),
                recurse=bool((source.get("directory") or {}).get("recurse")),
                images=tuple((source.get("kustomize") or {}).get("images") or ()),
                hard=refresh == "hard",
            )
            status["reconciledAt"] = rfc3339(now.at)
        else:
            fetched = before
        if refresh is not None:
            del meta["annotations"][ARGO_REFRESH]
            app = state.store.update("applications", app, spec_changed=False)
        fetched = self._compare_and_sync(state, app, fetched, status, now)
        write_status(state, "applications", app, status)
        self.fetched[meta["uid"]] = replace(fetched, seen=_signature(state, app))

    def _compare_and_sync(
        self,
        state: ClusterState,
        app: K8s,
        fetched: Fetched,
        status: K8s,
        now: Now,
    ) -> Fetched:
        spec, name = app["spec"], app["metadata"]["name"]
        source, destination = spec.get("source") or {}, spec.get("destination") or {}
        compared = {"source": copy_json(source), "destination": copy_json(destination)}
        error = fetched.error or _destination_error(destination)
        rendered = fetched.rendered
        if error or rendered is None:
            kind = "InvalidSpecError" if not fetched.error and error else "ComparisonError"
            status["sync"] = {"status": "Unknown", "revision": fetched.revision}
            status["sync"]["comparedTo"] = compared
            status["conditions"] = [condition(kind, error, status, now)]
            status.setdefault("health", {"status": "Unknown"})
            return fetched
        try:
            targets = gitsource.targets_of(
                rendered, str(destination.get("namespace") or "default"), gitsource.argo_stamp(name)
            )
        except RenderError as exc:
            status["sync"] = {"status": "Unknown", "revision": fetched.revision}
            status["conditions"] = [condition("ComparisonError", str(exc), status, now)]
            return fetched
        compared_targets = gitsource.ignoring(targets, spec.get("ignoreDifferences") or [])
        options = (spec.get("syncPolicy") or {}).get("syncOptions") or []
        applied = compared_targets if "RespectIgnoreDifferences=true" in options else targets
        in_sync = [gitsource.in_sync(state, t) for t in compared_targets]
        automated = (spec.get("syncPolicy") or {}).get("automated")
        # A failed sync's error stays until a sync succeeds, as Argo CD keeps it.
        conditions = [c for c in status.get("conditions") or [] if c.get("type") == "SyncError"]
        if all(in_sync):
            fetched = replace(fetched, drift_s=None, synced_revision=fetched.revision)
        elif automated is not None:
            # A refresh finds new commits sooner; like Argo CD, it syncs only a revision
            # not tried yet, or drift under self-heal.
            new = fetched.revision != fetched.synced_revision
            drift_s = fetched.drift_s if fetched.drift_s is not None else now.unix_s
            heal = bool(automated.get("selfHeal")) and (
                now.unix_s - drift_s >= self.timings.argocd_self_heal_delay_s
            )
            fetched = replace(fetched, drift_s=drift_s)
            if new or heal:
                operation = self._sync(applied, fetched, compared, now)
                if automated.get("prune"):
                    self._prune_argo(state, status, targets, operation)
                status["operationState"] = operation
                if operation["phase"] == "Succeeded":
                    record_history(status, fetched.revision, source, now)
                    conditions = []
                else:
                    conditions = [condition("SyncError", operation["message"], status, now)]
                announce(state, app, operation, now)
                fetched = replace(fetched, drift_s=None, synced_revision=fetched.revision)
                in_sync = [gitsource.in_sync(state, t) for t in compared_targets]
        extra = _left_over(state, status, targets)
        in_sync += [False] * len(extra)
        targets = targets + extra
        healths = [health(t.kind.resource, gitsource.live(state, t)) for t in targets]
        status["sync"] = {
            "status": "Synced" if all(in_sync) else "OutOfSync",
            "revision": fetched.revision,
            "comparedTo": compared,
        }
        status["health"] = {"status": worst(healths)}
        status["resources"] = [
            {**t.ref(), "status": "Synced" if ok else "OutOfSync", "health": {"status": h}}
            for t, ok, h in zip(targets, in_sync, healths, strict=True)
        ]
        for entry in status["resources"][len(targets) - len(extra) :]:
            entry["requiresPruning"] = True
        status["sourceType"] = rendered.source_type
        status["summary"] = {"images": images([t.manifest for t in targets])}
        status["conditions"] = conditions
        if not conditions:
            del status["conditions"]
        return fetched

    def _sync(self, targets: list[Target], fetched: Fetched, compared: K8s, now: Now) -> K8s:
        """Apply every target; Argo CD's ``operationState`` of the automated sync."""
        results, failed = [], ""
        for target in targets:
            try:
                verb = gitsource.apply(self.api, target)
                results.append({**target.ref(), "status": "Synced", "message": verb})
            except ApiError as exc:
                failed = failed or exc.message
                results.append({**target.ref(), "status": "SyncFailed", "message": exc.message})
        at = rfc3339(now.at)
        return {
            "operation": {
                "sync": {"revision": fetched.revision},
                "initiatedBy": {"automated": True},
                "retry": {},
            },
            "phase": "Failed" if failed else "Succeeded",
            "message": (
                f"one or more objects failed to apply, reason: {failed}"
                if failed
                else "successfully synced (all tasks run)"
            ),
            "syncResult": {
                "resources": results,
                "revision": fetched.revision,
                "source": compared["source"],
            },
            "startedAt": at,
            "finishedAt": at,
        }

    def _prune_argo(
        self, state: ClusterState, status: K8s, targets: list[Target], operation: K8s
    ) -> None:
        """Delete what the Application managed and Git no longer has (``prune: true``)."""
        for extra in _left_over(state, status, targets):
            self.api.delete_object(extra.kind.resource, extra.namespace, extra.name)
            result = {**extra.ref(), "status": "Pruned", "message": "pruned"}
            operation["syncResult"]["resources"].append(result)

    # ---- Flux ------------------------------------------------------------------------

    def _git_repository(self, state: ClusterState, repo: K8s, now: Now) -> None:
        meta, spec = repo["metadata"], repo["spec"]
        before = self.fetched.get(meta["uid"])
        status = copy_json(repo.get("status") or {})
        requested = (meta.get("annotations") or {}).get(FLUX_REQUESTED)
        if not _flux_due(before, repo, status, requested, now):
            return
        ref = spec.get("ref") or {}
        wanted = ref.get("commit") or ref.get("tag") or ref.get("name") or ref.get("branch")
        label = ref.get("tag") or ref.get("name") or ref.get("branch") or "HEAD"
        try:
            sha = resolve(str(spec["url"]), str(wanted or "HEAD"))
            error = ""
        except GitError as exc:
            sha, error = "", str(exc)
        self.fetched[meta["uid"]] = Fetched(meta["generation"], now.unix_s, sha, error=error)
        if requested is not None:
            status["lastHandledReconcileAt"] = requested
        status["observedGeneration"] = meta["generation"]
        if error:
            status["conditions"] = [ready(False, "GitOperationFailed", error, status, now)]
        else:
            revision = f"sha1:{sha}" if ref.get("commit") else f"{label}@sha1:{sha}"
            ns, name = meta["namespace"], meta["name"]
            path = f"gitrepository/{ns}/{name}/{sha}.tar.gz"
            status["artifact"] = {
                "revision": revision,
                "path": path,
                "url": f"http://source-controller.flux-system.svc.cluster.local./{path}",
                "lastUpdateTime": (status.get("artifact") or {}).get("lastUpdateTime")
                if (status.get("artifact") or {}).get("revision") == revision
                else rfc3339(now.at),
            }
            message = f"stored artifact for revision '{revision}'"
            status["conditions"] = [ready(True, "Succeeded", message, status, now)]
        write_status(state, "gitrepositories", repo, status)

    def _kustomization(self, state: ClusterState, ks: K8s, now: Now) -> None:
        meta, spec = ks["metadata"], ks["spec"]
        if spec.get("suspend"):
            return
        before = self.fetched.get(meta["uid"])
        status = copy_json(ks.get("status") or {})
        requested = (meta.get("annotations") or {}).get(FLUX_REQUESTED)
        ref = spec["sourceRef"]
        repo = state.store.find(
            "gitrepositories", str(ref.get("namespace") or meta["namespace"]), str(ref["name"])
        )
        source = self.fetched.get(repo["metadata"]["uid"]) if repo is not None else None
        moved = source is not None and before is not None and source.revision != before.revision
        if not moved and not _flux_due(before, ks, status, requested, now):
            return
        if requested is not None:
            status["lastHandledReconcileAt"] = requested
        status["observedGeneration"] = meta["generation"]
        if repo is None or source is None or source.error or not source.revision:
            message = f'GitRepository.source.toolkit.fluxcd.io "{ref["name"]}" not found'
            if source is not None and source.error:
                message = f"Source artifact not found: {source.error}"
            status["conditions"] = [ready(False, "ArtifactFailed", message, status, now)]
            self.fetched[meta["uid"]] = Fetched(meta["generation"], now.unix_s)
            write_status(state, "kustomizations", ks, status)
            return
        artifact = ((repo.get("status") or {}).get("artifact") or {}).get("revision", "")
        fetched = gitsource.fetch(
            before if before is not None and before.rendered is not None else None,
            meta["generation"],
            now,
            url=str(repo["spec"]["url"]),
            ref=source.revision,
            path=str(spec.get("path") or ""),
            recurse=True,
            images=tuple(spec.get("images") or ()),
            hard=False,
        )
        self.fetched[meta["uid"]] = fetched
        status["lastAttemptedRevision"] = artifact
        namespace = str(spec.get("targetNamespace") or meta["namespace"])
        try:
            if fetched.error or fetched.rendered is None:
                raise RenderError(fetched.error)
            targets = gitsource.targets_of(
                fetched.rendered,
                namespace,
                gitsource.flux_stamp(ks),
                force=bool(spec.get("targetNamespace")),
            )
        except RenderError as exc:
            status["conditions"] = [ready(False, "BuildFailed", str(exc), status, now)]
            write_status(state, "kustomizations", ks, status)
            return
        changes = []
        try:
            for target in targets:
                if not gitsource.in_sync(state, target):
                    verb = gitsource.apply(self.api, target).rsplit(" ", 1)[1]
                    where = f"{target.namespace}/{target.name}".lstrip("/")
                    changes.append(f"{target.kind.kind}/{where} {verb}")
            if spec.get("prune"):
                self._prune(state, status, targets)
        except ApiError as exc:
            status["conditions"] = [ready(False, "ReconciliationFailed", exc.message, status, now)]
            write_status(state, "kustomizations", ks, status)
            return
        if changes:
            event(state, ks, "Progressing", "\n".join(changes), now)
        status["lastAppliedRevision"] = artifact
        status["inventory"] = {"entries": [gitsource.inventory_id(t) for t in targets]}
        message = f"Applied revision: {artifact}"
        status["conditions"] = [ready(True, "ReconciliationSucceeded", message, status, now)]
        write_status(state, "kustomizations", ks, status)

    def _prune(self, state: ClusterState, status: K8s, targets: list[Target]) -> None:
        """Delete what the last inventory held and Git no longer has."""
        keep = {gitsource.inventory_id(t)["id"] for t in targets}
        by_kind = {(k.group, k.kind): k for k in KINDS}
        for entry in (status.get("inventory") or {}).get("entries") or []:
            if entry["id"] in keep:
                continue
            ns, name, group, kind_name = entry["id"].split("_", 3)
            kind = by_kind.get((group, kind_name))
            if kind is not None and state.store.find(kind.resource, ns, name) is not None:
                self.api.delete_object(kind.resource, ns, name)


# ---- reading and rendering ---------------------------------------------------------------


# ---- comparing and judging ---------------------------------------------------------------


def _destination_error(destination: K8s) -> str:
    if destination.get("server") not in _IN_CLUSTER or destination.get("name") not in (
        None,
        "",
        "in-cluster",
    ):
        where = destination.get("server") or destination.get("name")
        return f"cluster {where!r} has not been configured (only the in-cluster one is)"
    return ""


# ---- status ------------------------------------------------------------------------------


def _flux_due(
    before: Fetched | None, obj: K8s, status: K8s, requested: str | None, now: Now
) -> bool:
    meta = obj["metadata"]
    if before is None or before.generation != meta["generation"]:
        return True
    if requested is not None and requested != status.get("lastHandledReconcileAt"):
        return True
    return now.unix_s >= before.polled_s + parse_duration(str(obj["spec"].get("interval")))


def _unreadable(state: ClusterState, resource: str, obj: K8s, exc: Exception, now: Now) -> None:
    status = copy_json(obj.get("status") or {})
    message = f"the spec cannot be read: {exc!r}"
    if resource == "applications":
        status["conditions"] = [condition("InvalidSpecError", message, status, now)]
    else:
        status["conditions"] = [ready(False, "ReconciliationFailed", message, status, now)]
    write_status(state, resource, obj, status)


_BY_GROUP_KIND = {(k.group, k.kind): k for k in KINDS}


def _signature(state: ClusterState, app: K8s) -> str:
    """The resourceVersions of the Application and of the objects its status lists: a
    pass that would see the same ones would write the same status."""
    versions = [str(app["metadata"].get("resourceVersion"))]
    for entry in (app.get("status") or {}).get("resources") or []:
        kind = _BY_GROUP_KIND.get((entry.get("group"), entry.get("kind")))
        live = (
            state.store.find(kind.resource, entry.get("namespace", ""), entry.get("name", ""))
            if kind is not None
            else None
        )
        versions.append(str(live["metadata"].get("resourceVersion")) if live else "-")
    return ",".join(versions)


def _left_over(state: ClusterState, status: K8s, targets: list[Target]) -> list[Target]:
    """Objects the last status listed that Git no longer has and the cluster still does."""
    wanted = {(t.kind.resource, t.namespace, t.name) for t in targets}
    left = []
    for entry in status.get("resources") or []:
        kind = next(
            (k for k in KINDS if (k.group, k.kind) == (entry.get("group"), entry.get("kind"))),
            None,
        )
        key = (kind.resource if kind else "", entry.get("namespace", ""), entry.get("name", ""))
        if kind is None or key in wanted:
            continue
        live = state.store.find(*key)
        if live is not None:
            left.append(Target(kind, key[1], key[2], {"metadata": {}}))
    return left
