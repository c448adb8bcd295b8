"""The policy watch against a fake API: list then watch from the version, resume after
the server ends a watch, list again on 410 Gone, reconnect after errors, say once that
the CRDs are missing; and the status each policy should have."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from structlog.testing import capture_logs

from healer.decide.policies import parse
from healer.errors import PoliciesMissing, PolicyWatchExpired, TransientActionError
from healer.lifecycle.policy_watch import (
    Judged,
    PolicyBook,
    status_of,
    watch_policies,
    write_statuses,
)
from healer.types import JsonObject, WorkloadRef

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WEB = WorkloadRef("shop", "Deployment", "web")


def policy(name: str, version: str, generation: int = 1, **spec: Any) -> JsonObject:
    return {
        "apiVersion": "healer.io/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "generation": generation,
            "resourceVersion": version,
        },
        "spec": spec,
    }


@dataclass
class FakeApi:
    """Answers a script: each list and each watch takes the next entry; an exception
    entry is raised. Stops the watch (``stop``) once the script is done."""

    lists: list[Any]
    watches: list[Any]
    stop: threading.Event
    watched_from: list[str] = field(default_factory=list)
    written: list[tuple[str, JsonObject]] = field(default_factory=list)

    def list_all(self, plural: str) -> tuple[tuple[JsonObject, ...], str]:
        if not self.lists:
            self.stop.set()
            raise TransientActionError("script done")
        step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        return tuple(step[0]), step[1]

    def watch(
        self, plural: str, resource_version: str, *, timeout_s: int
    ) -> Iterator[tuple[str, JsonObject]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.stop.set()
            return
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step

    def write_status(self, plural: str, obj: JsonObject, status: JsonObject) -> None:
        self.written.append((str(obj["metadata"]["name"]), status))  # type: ignore[index]

    def workload_labels(self) -> list[tuple[WorkloadRef, Mapping[str, str]]]:
        return [(WEB, {}), (WorkloadRef("blog", "Deployment", "web"), {})]


def run(api: FakeApi, book: PolicyBook) -> None:
    watch_policies(
        api, book, plural="healingpolicies", stop=api.stop, backoff_max_s=0.01, missing_retry_s=0
    )


def test_lists_then_watches_from_the_version_and_resumes_from_the_last_seen() -> None:
    stop, book = threading.Event(), PolicyBook()
    api = FakeApi(
        lists=[([policy("a", "10")], "100")],
        watches=[
            [("ADDED", policy("b", "101", mode="approval"))],
            [("DELETED", policy("a", "102"))],
        ],
        stop=stop,
    )
    run(api, book)
    assert api.watched_from == ["100", "101", "102"]
    assert [p.ref for p in book.current()] == ["HealingPolicy shop/b"]


def test_410_gone_lists_again_and_errors_reconnect() -> None:
    stop, book = threading.Event(), PolicyBook()
    api = FakeApi(
        lists=[([policy("a", "10")], "100"), ([policy("c", "300")], "300")],
        watches=[PolicyWatchExpired("too old"), TransientActionError("connection reset")],
        stop=stop,
    )
    with capture_logs() as logs:
        run(api, book)
    assert api.watched_from[:2] == ["100", "300"]
    assert [p.ref for p in book.current()] == ["HealingPolicy shop/c"]  # a gone with the relist
    events = [e["event"] for e in logs]
    assert "policy_watch_expired" in events and "policy_watch_failed" in events


def test_missing_crds_are_said_once_and_looked_for_again() -> None:
    stop, book = threading.Event(), PolicyBook()
    missing = PoliciesMissing("healer.io/v1alpha1 is not served")
    api = FakeApi(lists=[missing, missing, missing], watches=[], stop=stop)
    with capture_logs() as logs:
        run(api, book)
    said = [e for e in logs if e["event"] == "policies_not_installed"]
    assert len(said) == 1 and said[0]["using"] == "settings"
    assert book.current() == ()


def test_a_status_only_change_does_not_ask_for_a_status_write() -> None:
    book = PolicyBook()
    book.replace_all("healingpolicies", [policy("a", "1")])
    book.changed.clear()
    with_status = {**policy("a", "2"), "status": {"matchedWorkloads": 1}}
    book.apply("healingpolicies", "MODIFIED", with_status)
    assert not book.changed.is_set()
    book.apply("healingpolicies", "MODIFIED", policy("a", "3", generation=2, mode="auto"))
    assert book.changed.is_set()


def test_status_of_a_valid_and_of_a_contradicting_policy() -> None:
    workloads = [(WEB, {}), (WorkloadRef("blog", "Deployment", "web"), {})]
    good = policy("a", "1")
    status = status_of(Judged("healingpolicies", good, parse(good)), workloads, NOW)
    assert status is not None
    assert (status["observedGeneration"], status["matchedWorkloads"]) == (1, 1)
    conditions = {c["type"]: c for c in status["conditions"]}  # type: ignore[union-attr, index]
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["lastTransitionTime"] == "2026-03-02T12:00:00Z"
    written = {**good, "status": status}
    assert status_of(Judged("healingpolicies", written, parse(written)), workloads, NOW) is None

    bad = policy("b", "2", limits={"minReplicas": 3, "maxReplicas": 1})
    status = status_of(Judged("healingpolicies", bad, parse(bad)), workloads, NOW)
    assert status is not None and status["matchedWorkloads"] == 0
    conditions = {c["type"]: c for c in status["conditions"]}  # type: ignore[union-attr, index]
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False",
        "MinReplicasAboveMax",
    )
    assert conditions["Invalid"]["status"] == "True"


def test_write_statuses_writes_only_what_changed() -> None:
    stop, book = threading.Event(), PolicyBook()
    api = FakeApi(lists=[], watches=[], stop=stop)
    book.replace_all("healingpolicies", [policy("a", "1"), policy("b", "1", mode="x")])
    assert write_statuses(api, book, now=NOW) == 2
    [status] = [s for name, s in api.written if name == "b"]
    conditions = {c["type"]: c for c in status["conditions"]}  # type: ignore[union-attr, index]
    assert conditions["Invalid"]["reason"] == "InvalidSpec"


def test_synced_once_every_kind_was_listed_or_found_missing() -> None:
    book = PolicyBook()
    assert not book.wait_synced(0)
    book.replace_all("healingpolicies", [policy("a", "1")])
    assert not book.wait_synced(0)
    book.missing("clusterhealingpolicies")
    assert book.wait_synced(0)
    assert [p.ref for p in book.current()] == ["HealingPolicy shop/a"]
