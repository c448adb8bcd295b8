"""The object store's history of writes, from which watches start (the watch cache)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from healer.sim.objects import ObjectStore

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def store() -> ObjectStore:
    uids = count()
    return ObjectStore(uid=lambda: f"uid-{next(uids)}")


def lease(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"holderIdentity": "a"}}


def test_writes_after_a_version_come_back_in_order_with_their_versions() -> None:
    objects = store()
    objects.keep_history()
    start = int(objects.resource_version)
    first = objects.create("leases", lease("one"), now=NOW)
    objects.create("events", {"metadata": {"name": "e", "namespace": "ns"}}, now=NOW)
    first["spec"]["holderIdentity"] = "b"
    objects.update("leases", first, spec_changed=True)
    objects.delete("leases", "ns", "one")
    events = objects.events_since(start, "leases")
    assert events is not None
    assert [(e.type, e.object["spec"]["holderIdentity"]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "b"),
        ("DELETED", "b"),
    ]
    assert [int(e.object["metadata"]["resourceVersion"]) for e in events] == [
        start + 1,
        start + 3,
        start + 4,
    ]
    assert objects.events_since(start + 3, "leases") == events[2:]
    assert objects.events_since(int(objects.resource_version), "leases") == []


def test_snapshots_do_not_change_with_later_writes() -> None:
    objects = store()
    objects.keep_history()
    start = int(objects.resource_version)
    obj = objects.create("leases", lease("one"), now=NOW)
    obj["spec"]["holderIdentity"] = "changed in place"
    events = objects.events_since(start, "leases")
    assert events is not None and events[0].object["spec"]["holderIdentity"] == "a"


def test_versions_older_than_the_history_are_expired() -> None:
    objects = store()
    before = int(objects.resource_version)
    objects.create("leases", lease("early"), now=NOW)
    assert objects.events_since(before, "leases") is None  # not recording yet
    objects.keep_history(limit=3)
    start = int(objects.resource_version)
    for i in range(3):
        objects.create("leases", lease(f"l{i}"), now=NOW)
    assert objects.events_since(start, "leases") is not None
    objects.create("leases", lease("l3"), now=NOW)  # the oldest write drops out
    assert objects.events_since(start, "leases") is None
    kept = objects.events_since(start + 1, "leases")
    assert kept is not None and [e.object["metadata"]["name"] for e in kept] == ["l1", "l2", "l3"]
