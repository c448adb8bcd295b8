"""The rollback commit against a real bare remote: diff, message, trailers, push,
idempotence, a concurrent push rebased, a conflicting one escalated, and the three
layouts an image is pinned in."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.errors import PermanentActionError
from healer.gitops.owner import GitSource
from healer.gitops.pins import Change
from healer.gitops.repo import GitCommandError
from healer.gitops.rollback import GitRollback, Story
from tests.unit.gitops.gitrepos import DEPLOYMENT, Person, count, git, head, make_remote, settings

STORY = Story(
    incident_id=12,
    workload="Deployment shop/cart",
    cause="bad_release",
    explanation="errors rose right after the rollout of revision 4.",
    evidence="anomaly score 0.97; error_ratio up 9σ (0.21 against 0.002)",
    link="https://healer.example.com/incidents/12",
)
CHANGE = (Change("shop/cart:1.4.0", "shop/cart:1.3.2"),)


def _released(tmp_path: Path, files: dict[str, str], release: dict[str, str]) -> Path:
    """A remote with ``files`` first, then a commit by a person that makes ``release``."""
    remote = make_remote(tmp_path, files)
    Person(remote, tmp_path / "dev").commit(release, "Release cart 1.4.0")
    return remote


def _source(remote: Path, path: str = "apps/cart") -> GitSource:
    return GitSource(url=f"file://{remote}", revision="main", path=path)


def test_the_commit_pins_the_good_image_with_the_incident_in_its_message(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2"), "README.md": "shop\n"},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "README.md": "shop 1.4\n"},
    )
    before = head(remote)
    landed = GitRollback(settings(tmp_path)).land(_source(remote), CHANGE, STORY, tool="Argo CD")
    assert landed.commit == head(remote) and not landed.already and landed.reverted is None
    assert git(remote, "rev-parse", f"{landed.commit}^").strip() == before  # a child, no rewrite
    diff = git(remote, "show", "--format=", "--unified=0", landed.commit)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == ["-          image: shop/cart:1.4.0", "+          image: shop/cart:1.3.2"]
    text = git(remote, "log", "-1", "--format=%B", landed.commit)
    assert text.startswith("Roll back Deployment shop/cart to shop/cart:1.3.2 (incident 12)\n")
    assert "bad_release" in text and "error_ratio up 9σ" in text and "Argo CD keeps" in text
    assert "https://healer.example.com/incidents/12" in text
    trailers = git(remote, "log", "-1", "--format=%(trailers:only,unfold)", landed.commit)
    assert trailers.split("\n")[:2] == ["Healer-Incident: 12", "Healer-Action: rollback"]
    assert git(remote, "log", "-1", "--format=%cn <%ce>", landed.commit).strip() == (
        "healer <healer@example.com>"
    )
    assert "# the shop's cart service" in git(remote, "show", "main:apps/cart/deployment.yaml")


def test_a_second_run_finds_its_own_commit_and_does_not_commit_twice(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "1.4.0\n"},
    )
    first = GitRollback(settings(tmp_path)).land(_source(remote), CHANGE, STORY, tool="Flux")
    Person(remote, tmp_path / "other").commit({"NOTES": "later\n"}, "Unrelated change")
    commits = count(remote)
    again = GitRollback(settings(tmp_path)).land(_source(remote), CHANGE, STORY, tool="Flux")
    assert again.already and again.commit == first.commit
    assert count(remote) == commits
    # A fresh cache (another replica) finds it too.
    other = GitRollback(settings(tmp_path / "replica"))
    assert other.land(_source(remote), CHANGE, STORY, tool="Flux").commit == first.commit


def test_a_commit_that_only_pinned_the_bad_image_is_reverted(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0")},
    )
    culprit = head(remote)
    landed = GitRollback(settings(tmp_path)).land(_source(remote), CHANGE, STORY, tool="Argo CD")
    assert landed.reverted == culprit
    assert f"This reverts commit {culprit}." in git(remote, "log", "-1", "--format=%B")
    shown = git(remote, "show", "main:apps/cart/deployment.yaml")
    assert shown == DEPLOYMENT.format(tag="1.3.2")


class _Raced(GitRollback):
    """Someone pushes after healer fetched and before it pushes: the race, made certain."""

    def __init__(self, tmp_path: Path, person: Person, files: dict[str, str]) -> None:
        super().__init__(settings(tmp_path))
        self._person, self._files = person, files

    def _change(self, git_, path, changes):  # type: ignore[no-untyped-def]  # test seam
        done = super()._change(git_, path, changes)
        self._person.commit(self._files, "Meanwhile")
        return done


def test_a_push_made_meanwhile_is_fetched_and_the_rollback_rebased_onto_it(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "1.4.0\n"},
    )
    person = Person(remote, tmp_path / "colleague")
    raced = _Raced(tmp_path, person, {"apps/search/deployment.yaml": "kind: Deployment\n"})
    landed = raced.land(_source(remote), CHANGE, STORY, tool="Argo CD")
    theirs = git(person.dir, "rev-parse", "HEAD").strip()
    assert landed.rebased and head(remote) == landed.commit
    assert git(remote, "rev-parse", f"{landed.commit}^").strip() == theirs  # on top of theirs
    tree = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert "apps/search/deployment.yaml" in tree
    assert "shop/cart:1.3.2" in git(remote, "show", "main:apps/cart/deployment.yaml")


def test_a_push_meanwhile_that_changes_the_same_pin_is_escalated(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "1.4.0\n"},
    )
    person = Person(remote, tmp_path / "colleague")
    raced = _Raced(tmp_path, person, {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.1")})
    with pytest.raises(GitCommandError, match=r"apps/cart/deployment\.yaml") as caught:
        raced.land(_source(remote), CHANGE, STORY, tool="Argo CD")
    assert caught.value.kind == "conflict"
    assert head(remote) == git(person.dir, "rev-parse", "HEAD").strip()  # theirs stands
    assert "shop/cart:1.4.1" in git(remote, "show", "main:apps/cart/deployment.yaml")


KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: shop/cart
    newTag: "{tag}"
  - name: shop/search
    newTag: "2.0.0"
"""
BASE = DEPLOYMENT.format(tag="latest").replace("shop/cart:latest", "shop/cart")


def test_a_kustomize_images_entry_gets_the_good_tag(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {
            "base/deployment.yaml": BASE,
            "overlays/prod/kustomization.yaml": KUSTOMIZATION.format(tag="1.3.2"),
        },
        {"overlays/prod/kustomization.yaml": KUSTOMIZATION.format(tag="1.4.0"), "NOTES": "x\n"},
    )
    landed = GitRollback(settings(tmp_path)).land(
        _source(remote, "overlays/prod"), CHANGE, STORY, tool="Flux"
    )
    assert landed.files == ("overlays/prod/kustomization.yaml",)
    shown = git(remote, "show", "main:overlays/prod/kustomization.yaml")
    assert shown == KUSTOMIZATION.format(tag="1.3.2")  # quoting kept, search untouched
    assert git(remote, "show", "main:base/deployment.yaml") == BASE


VALUES = """\
replicaCount: 3
image:
  repository: shop/cart
  tag: {tag}
  pullPolicy: IfNotPresent
"""
TEMPLATE = 'image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"\n'


def test_helm_values_get_the_good_tag(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {
            "charts/cart/values.yaml": VALUES.format(tag="1.3.2"),
            "charts/cart/templates/d.yaml": TEMPLATE,
        },
        {"charts/cart/values.yaml": VALUES.format(tag="1.4.0"), "NOTES": "x\n"},
    )
    change = (Change("shop/cart:1.4.0", "shop/cart:1.10"),)
    landed = GitRollback(settings(tmp_path)).land(
        _source(remote, "charts/cart"), change, STORY, tool="Argo CD"
    )
    assert landed.files == ("charts/cart/values.yaml",)
    shown = git(remote, "show", "main:charts/cart/values.yaml")
    assert shown == VALUES.format(tag='"1.10"')  # quoted: plain 1.10 would read as a float


def test_a_path_that_pins_no_such_image_pushes_nothing(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.5.0")},
    )
    before = head(remote)
    with pytest.raises(PermanentActionError, match="no image to change at path 'apps/cart'"):
        GitRollback(settings(tmp_path)).land(_source(remote), CHANGE, STORY, tool="Argo CD")
    with pytest.raises(PermanentActionError, match="path 'apps/gone' does not exist"):
        GitRollback(settings(tmp_path)).land(
            _source(remote, "apps/gone"), CHANGE, STORY, tool="Argo CD"
        )
    assert head(remote) == before


def test_an_unreachable_repository_and_a_tag_are_refused_with_the_reason(tmp_path: Path) -> None:
    missing = GitSource(url=f"file://{tmp_path}/nowhere.git", revision="main", path=".")
    with pytest.raises(GitCommandError, match="does not appear to be a git repository") as caught:
        GitRollback(settings(tmp_path)).land(missing, CHANGE, STORY, tool="Argo CD")
    assert caught.value.kind == "unreachable"
    remote = make_remote(tmp_path, {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0")})
    spelled = GitSource(url=f"file://{remote}", revision="refs/heads/main", path="apps/cart")
    assert GitRollback(settings(tmp_path)).land(spelled, CHANGE, STORY, tool="Argo CD").branch == (
        "main"
    )
    tagged = GitSource(url=f"file://{remote}", revision="v1.4.0", path="apps/cart")
    with pytest.raises(PermanentActionError, match=r"'v1\.4\.0' is not a branch"):
        GitRollback(settings(tmp_path)).land(tagged, CHANGE, STORY, tool="Argo CD")


def test_head_follows_the_remote_default_branch(tmp_path: Path) -> None:
    remote = make_remote(
        tmp_path, {"app/deployment.yaml": DEPLOYMENT.format(tag="1.4.0")}, branch="trunk"
    )
    source = GitSource(url=f"file://{remote}", revision="HEAD", path="app")
    landed = GitRollback(settings(tmp_path)).land(source, CHANGE, STORY, tool="Argo CD")
    assert landed.branch == "trunk" and head(remote, "trunk") == landed.commit


def test_a_pull_request_branch_starts_from_the_tracked_one(tmp_path: Path) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "x\n"},
    )
    main = head(remote)
    rollback = GitRollback(settings(tmp_path))
    landed = rollback.land(
        _source(remote), CHANGE, STORY, tool="Argo CD", branch="healer/incident-12"
    )
    assert (landed.branch, landed.base) == ("healer/incident-12", "main")
    assert head(remote) == main  # the tracked branch waits for the merge
    assert git(remote, "rev-parse", f"{landed.commit}^").strip() == main
    again = rollback.land(
        _source(remote), CHANGE, STORY, tool="Argo CD", branch="healer/incident-12"
    )
    assert again.already and again.commit == landed.commit


class _Twin(GitRollback):
    """Another replica pushes the same incident's rollback between our fetch and push."""

    def __init__(self, tmp_path: Path, source: GitSource) -> None:
        super().__init__(settings(tmp_path / "me"))
        twin = settings(tmp_path / "twin", committer_name="healer-b")  # not the same commit
        self._other, self._source = GitRollback(twin), source

    def _change(self, git_, path, changes):  # type: ignore[no-untyped-def]  # test seam
        done = super()._change(git_, path, changes)
        self._other.land(self._source, changes, STORY, tool="Argo CD")
        return done


def test_a_twin_replica_that_pushed_the_same_rollback_first_is_not_pushed_again(
    tmp_path: Path,
) -> None:
    remote = _released(
        tmp_path,
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.3.2")},
        {"apps/cart/deployment.yaml": DEPLOYMENT.format(tag="1.4.0"), "NOTES": "x\n"},
    )
    before = count(remote)
    landed = _Twin(tmp_path, _source(remote)).land(_source(remote), CHANGE, STORY, tool="Argo CD")
    assert landed.already and landed.commit == head(remote)
    assert count(remote) == before + 1  # one rollback commit, the twin's
