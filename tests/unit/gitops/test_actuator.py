"""The GitOps actuator: a rollback of an Argo CD or Flux workload lands in Git (pushed in
auto mode, a pull or merge request in approval mode, merged when approved or merged in
the forge), the syncer is asked to sync, and bad input changes nothing in the cluster.

The forge is ``forgeserver``: a local HTTP server following the GitHub and GitLab REST
contracts for exactly these calls: GitHub ``POST /repos/{o}/{r}/pulls``, ``GET
/repos/{o}/{r}/pulls?head=o:branch&state=all``, ``GET /repos/{o}/{r}/pulls/{n}``, ``PUT
/repos/{o}/{r}/pulls/{n}/merge``; GitLab ``POST /projects/:id/merge_requests``, ``GET
/projects/:id/merge_requests?source_branch=``, ``GET /projects/:id/merge_requests/:iid``,
``PUT /projects/:id/merge_requests/:iid/merge``; and to close: GitHub ``PATCH
/repos/{o}/{r}/pulls/{n}`` (``state: closed``), GitLab ``PUT
/projects/:id/merge_requests/:iid`` (``state_event: close``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from healer.audit.views import ActionView
from healer.errors import PermanentActionError
from healer.gitops.actuator import GitOpsActuator
from healer.gitops.build import forges
from healer.gitops.repo import Redactor
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Incident,
    IncidentStatus,
    JsonObject,
    Mode,
    ObjectRef,
    Plan,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadRef,
    WorkloadState,
)
from tests.builders import CART, NOW, state
from tests.unit.gitops.forgeserver import TOKEN, Forge, serve
from tests.unit.gitops.gitrepos import DEPLOYMENT, Person, git, head, make_remote, settings

GOOD = Revision(3, "cart-3", NOW - timedelta(days=3), ("shop/cart:1.3.2",))
BAD = Revision(4, "cart-4", NOW - timedelta(hours=1), ("shop/cart:1.4.0",))
TRACKED = {"argocd.argoproj.io/tracking-id": "cart:apps/Deployment:shop/cart"}


class FakeCluster:
    """The wrapped actuator: the state it is given, and the plans it was asked to apply."""

    def __init__(self, current: WorkloadState) -> None:
        self.current = current
        self.applied: list[Plan] = []

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.current

    def apply(self, plan: Plan, *, now: object) -> ActionRecord:
        self.applied.append(plan)
        request: JsonObject = {"verb": "PATCH"}
        return ActionRecord(plan.action, plan.workload, request, ActionStatus.SUCCEEDED, NOW, NOW)

    def already_applied(self, intent: ActionRecord) -> bool:
        return False


class FakeObjects:
    """Custom objects by (plural, namespace, name), and the annotations set on them."""

    def __init__(self, objects: dict[tuple[str, str, str], JsonObject]) -> None:
        self.objects = objects
        self.annotated: list[tuple[str, str, dict[str, str]]] = []

    def get(self, ref: ObjectRef) -> JsonObject:
        found = self.objects.get((ref.plural, ref.namespace, ref.name))
        if found is None:
            raise PermanentActionError(f"{ref}: 404 Not Found")
        return found

    def annotate(self, ref: ObjectRef, annotations: Mapping[str, str]) -> None:
        self.annotated.append((ref.plural, ref.name, dict(annotations)))


def _application(url: str, path: str = "apps/cart") -> JsonObject:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "cart", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": url, "targetRevision": "main", "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def _incident() -> Incident:
    dev = SignalDeviation(Signal.ERROR_RATIO, 0.21, 0.002, 9.0, Direction.UP)
    finding = Finding(CART, NOW, 0.97, (dev,), NOW - timedelta(minutes=2), "test")
    diagnosis = Diagnosis(CART, Cause.BAD_RELEASE, 0.9, "errors rose after revision 4.")
    return Incident(7, CART, IncidentStatus.OPEN, NOW, finding, diagnosis)


def _plan(mode: Mode) -> Plan:
    params = {"to_revision": 3, "from_revision": 4}
    return Plan(CART, "rollback-on-bad-release", ActionKind.ROLLBACK, params, mode, (), "bad", 600)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    remote = make_remote(tmp_path, {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")})
    Person(remote, tmp_path / "dev").commit(
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "1.4\n"}, "Release"
    )
    return remote


def _actuator(
    tmp_path: Path,
    remote: Path,
    cluster: FakeCluster,
    *,
    forge_url: str | None = None,
    kind: str = "github",
    **changes: object,
) -> tuple[GitOpsActuator, FakeObjects]:
    objects = FakeObjects({("applications", "argocd", "cart"): _application(f"file://{remote}")})
    token = tmp_path / "forge-token"
    token.write_text(TOKEN, encoding="utf-8")
    more: dict[str, object] = {"token_file": token, **changes}
    if forge_url is not None:
        more |= {"forge": kind, "forge_url": forge_url, "forge_project": "shop/deploy"}
    gitops = settings(tmp_path, **more)
    actuator = GitOpsActuator(
        cluster,
        objects=objects,
        settings=gitops,
        incident_of=lambda w: _incident() if w == CART else None,
        link=lambda n: f"https://healer.example.com/incidents/{n}",
        forges=forges(gitops, Redactor()),
    )
    return actuator, objects


def test_auto_mode_pushes_the_commit_and_asks_argo_cd_to_refresh(
    tmp_path: Path, remote: Path
) -> None:
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, objects = _actuator(tmp_path, remote, cluster)
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.SUCCEEDED, record.error
    commit = record.request["commit"]
    assert isinstance(commit, dict) and commit["sha"] == head(remote)
    assert "Healer-Incident: 7" in git(remote, "log", "-1", "--format=%B")
    assert objects.annotated == [("applications", "cart", {"argocd.argoproj.io/refresh": "hard"})]
    assert cluster.applied == []  # no in-cluster undo: self-heal would revert it
    again = actuator.apply(_plan(Mode.AUTO), now=NOW)  # a crash and a second try
    assert isinstance(again.request["commit"], dict) and again.request["commit"]["already"]


def test_undo_first_undoes_in_the_cluster_after_the_push(tmp_path: Path, remote: Path) -> None:
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, _ = _actuator(tmp_path, remote, cluster, undo_first=True)
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.SUCCEEDED
    assert [p.mode for p in cluster.applied] == [Mode.AUTO]
    assert record.request["undo"] == {"status": "succeeded", "error": None}


@pytest.mark.parametrize(
    ("why", "app_path", "revisions"),
    [
        ("no image to change at path", "apps/cart", (BAD, GOOD)),
        ("path 'apps/none' does not exist", "apps/none", (BAD, GOOD)),
        ("runs the same images", "apps/cart", (BAD, replace(GOOD, images=BAD.images))),
    ],
)
def test_bad_input_fails_before_any_cluster_change_even_with_undo_first(
    tmp_path: Path, remote: Path, why: str, app_path: str, revisions: tuple[Revision, ...]
) -> None:
    if why.startswith("no image"):
        Person(remote, tmp_path / "other").commit(
            {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.5.0")}, "Another release"
        )
    cluster = FakeCluster(state(*revisions, annotations=TRACKED))
    actuator, objects = _actuator(tmp_path, remote, cluster, undo_first=True)
    objects.objects[("applications", "argocd", "cart")] = _application(f"file://{remote}", app_path)
    before = head(remote)
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.FAILED and record.error is not None
    assert why in record.error
    assert cluster.applied == [] and objects.annotated == [] and head(remote) == before


def test_an_application_that_is_gone_fails_the_action_with_its_name(
    tmp_path: Path, remote: Path
) -> None:
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, objects = _actuator(tmp_path, remote, cluster)
    objects.objects.clear()
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.FAILED and "argocd/cart: 404" in str(record.error)
    assert cluster.applied == []


def test_a_workload_no_syncer_owns_and_other_actions_go_to_the_cluster(
    tmp_path: Path, remote: Path
) -> None:
    cluster = FakeCluster(state(BAD, GOOD))
    actuator, _ = _actuator(tmp_path, remote, cluster)
    assert actuator.apply(_plan(Mode.AUTO), now=NOW).request == {"verb": "PATCH"}
    restart = replace(_plan(Mode.AUTO), action=ActionKind.RESTART, params={})
    cluster.current = state(BAD, GOOD, annotations=TRACKED)
    actuator.apply(restart, now=NOW)
    assert [p.action for p in cluster.applied] == [ActionKind.ROLLBACK, ActionKind.RESTART]


def test_flux_owned_workloads_are_committed_and_both_objects_asked_to_reconcile(
    tmp_path: Path, remote: Path
) -> None:
    labels = {
        "kustomize.toolkit.fluxcd.io/name": "cart",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    cluster = FakeCluster(state(BAD, GOOD, labels=labels))
    actuator, objects = _actuator(tmp_path, remote, cluster)
    objects.objects = {
        ("kustomizations", "flux-system", "cart"): {
            "spec": {"path": "./apps/cart", "sourceRef": {"kind": "GitRepository", "name": "shop"}}
        },
        ("gitrepositories", "flux-system", "shop"): {
            "spec": {"url": f"file://{remote}", "ref": {"branch": "main"}}
        },
    }
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.SUCCEEDED, record.error
    stamp = {"reconcile.fluxcd.io/requestedAt": "2026-03-02T12:00:00Z"}
    assert objects.annotated == [
        ("gitrepositories", "shop", stamp),
        ("kustomizations", "cart", stamp),
    ]


@pytest.fixture(params=["github", "gitlab"])
def forge(
    request: pytest.FixtureRequest, tmp_path: Path, remote: Path
) -> Iterator[tuple[Forge, str]]:
    scratch = tmp_path / "forge"
    scratch.mkdir()
    made = Forge(remote, scratch, request.param)
    with serve(made) as url:
        yield made, url


def _forged(tmp_path: Path, remote: Path, forge: tuple[Forge, str]) -> tuple[Forge, GitOpsActuator]:
    """The actuator on a bad release of the tracked workload, opening its requests in
    ``forge`` (GitHub's or GitLab's API, served locally)."""
    served, url = forge
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, _ = _actuator(tmp_path, remote, cluster, forge_url=url, kind=served.kind)
    return served, actuator


def test_approval_opens_a_request_and_approving_merges_it(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    served, url = forge
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, objects = _actuator(tmp_path, remote, cluster, forge_url=url, kind=served.kind)
    main = head(remote)
    pending = actuator.apply(_plan(Mode.APPROVAL), now=NOW)
    assert pending.status is ActionStatus.PENDING_APPROVAL, pending.error
    review = pending.request["pull_request"]
    assert isinstance(review, dict) and review["state"] == "open"
    assert str(review["url"]).endswith("/1")
    assert head(remote) == main and head(remote, "healer/incident-7") != main
    assert (
        served.requests[1]["base"] == "main" and "Incident: https://" in served.requests[1]["body"]
    )
    assert cluster.applied == [] and objects.annotated == []
    # Planned again (a restart of healer): the same request, not a second one.
    assert actuator.apply(_plan(Mode.APPROVAL), now=NOW).request["pull_request"] == review
    assert len(served.requests) == 1
    approved = actuator.apply(_plan(Mode.AUTO), now=NOW)  # what an approval runs
    assert approved.status is ActionStatus.SUCCEEDED, approved.error
    assert served.requests[1]["state"] == "merged"
    assert "shop/cart:1.3.2" in git(remote, "show", "main:apps/cart/deployment.yaml")
    assert objects.annotated == [("applications", "cart", {"argocd.argoproj.io/refresh": "hard"})]


def test_a_request_merged_in_the_forge_is_not_merged_again(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    served, actuator = _forged(tmp_path, remote, forge)
    actuator.apply(_plan(Mode.APPROVAL), now=NOW)
    served.merge_in_the_forge(1)
    merged_head = head(remote)
    found = actuator.review(CART, 7)
    assert found is not None and found.state == "merged"
    record = actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert record.status is ActionStatus.SUCCEEDED
    assert isinstance(record.request["pull_request"], dict)
    assert record.request["pull_request"]["state"] == "merged"
    assert head(remote) == merged_head
    assert not any(c.endswith("/merge") for c in served.calls)


def test_a_forge_that_refuses_the_token_fails_the_action(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    _, actuator = _forged(tmp_path, remote, forge)
    (tmp_path / "forge-token").write_text("wrong-token", encoding="utf-8")
    record = actuator.apply(_plan(Mode.APPROVAL), now=NOW)
    assert record.status is ActionStatus.FAILED and "401" in str(record.error)
    assert "wrong-token" not in str(record.error)


class FakeReviews:
    """The review queue: pending actions, and the approvals and rejections given."""

    def __init__(self, pending: list[ActionView]) -> None:
        self.pending = pending
        self.settled: list[tuple[str, int, str, str]] = []

    def actions(self, *, status: ActionStatus | None = None, limit: int = 500) -> list[ActionView]:
        return [a for a in self.pending if status is None or a.status is status]

    def approve_action(self, action_id: int, *, by: str, reason: str, at: object) -> ActionView:
        self.settled.append(("approved", action_id, by, reason))
        return self.pending[0]

    def reject_action(self, action_id: int, *, by: str, reason: str, at: object) -> ActionView:
        self.settled.append(("rejected", action_id, by, reason))
        return self.pending[0]


def _pending(record: ActionRecord, action_id: int) -> ActionView:
    return ActionView(
        action_id, 7, record.kind, record.target, record.status, {}, record.request, None,
        NOW, NOW, None, None, None, None, None, "healer",
    )  # fmt: skip


def _awaiting_review(actuator: GitOpsActuator, action_id: int) -> FakeReviews:
    """A request opened for approval, its action pending as ``action_id`` in a fake queue."""
    pending = actuator.apply(_plan(Mode.APPROVAL), now=NOW)
    reviews = FakeReviews([_pending(pending, action_id)])
    actuator._reviews = reviews
    return reviews


def test_a_merge_in_the_forge_approves_the_pending_action(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    served, actuator = _forged(tmp_path, remote, forge)
    reviews = _awaiting_review(actuator, 31)
    assert actuator.watch_merges(NOW) == 0  # still open: nothing approved
    served.merge_in_the_forge(1)
    assert actuator.watch_merges(NOW) == 1
    [(verdict, action_id, by, reason)] = reviews.settled
    assert (verdict, action_id, by) == ("approved", 31, "forge")
    assert reason.endswith("/1 merged in the forge")


def test_a_request_closed_in_the_forge_rejects_the_pending_action(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    served, actuator = _forged(tmp_path, remote, forge)
    reviews = _awaiting_review(actuator, 32)
    served.requests[1]["state"] = "closed"  # a person closes it without merging
    assert actuator.watch_merges(NOW) == 1
    [(verdict, action_id, by, reason)] = reviews.settled
    assert (verdict, action_id, by) == ("rejected", 32, "forge")
    assert "closed in the forge without merging" in reason


def test_after_a_crash_a_pushed_commit_counts_as_landed(tmp_path: Path, remote: Path) -> None:
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, _ = _actuator(tmp_path, remote, cluster)
    intent = ActionRecord(
        ActionKind.ROLLBACK, CART, {"action": "rollback", "params": {"to_revision": 3}},
        ActionStatus.INTENDED, NOW, NOW,
    )  # fmt: skip
    assert not actuator.already_applied(intent)  # nothing pushed yet: the cluster says no
    actuator.apply(_plan(Mode.AUTO), now=NOW)
    assert actuator.already_applied(intent)  # in Git; the syncer applies it anyway


def test_a_rejection_in_healer_closes_the_open_request(
    tmp_path: Path, remote: Path, forge: tuple[Forge, str]
) -> None:
    served, actuator = _forged(tmp_path, remote, forge)
    pending = actuator.apply(_plan(Mode.APPROVAL), now=NOW)
    rejected = replace(_pending(pending, 33), status=ActionStatus.REJECTED)
    actuator._reviews = FakeReviews([rejected])
    assert actuator.watch_merges(NOW) == 0
    assert served.requests[1]["state"] == "closed"
    calls = len(served.calls)
    actuator.watch_merges(NOW)  # looked at once: no second close
    assert len(served.calls) == calls


def test_without_a_forge_approval_and_dry_run_push_nothing(tmp_path: Path, remote: Path) -> None:
    cluster = FakeCluster(state(BAD, GOOD, annotations=TRACKED))
    actuator, objects = _actuator(tmp_path, remote, cluster)
    main = head(remote)
    held = ((Mode.APPROVAL, ActionStatus.PENDING_APPROVAL), (Mode.DRY_RUN, ActionStatus.DRY_RUN))
    for mode, status in held:
        record = actuator.apply(_plan(mode), now=NOW)
        assert record.status is status
        assert record.request["git"] == {
            "owner": "applications.argoproj.io/argocd/cart",
            "repository": f"file://{remote}",
            "revision": "main",
            "path": "apps/cart",
        }
        assert "commit" not in record.request and "pull_request" not in record.request
    assert head(remote) == main and git(remote, "branch", "--list").split() == ["*", "main"]
    assert objects.annotated == [] and cluster.applied == []
    approved = actuator.apply(_plan(Mode.AUTO), now=NOW)  # approved: pushed to main
    assert approved.status is ActionStatus.SUCCEEDED and head(remote) != main
