"""One store, several clusters: the list filters by cluster, the overview tallies each."""

from __future__ import annotations

from pathlib import Path

from test_overview import AS_OPERATOR, AS_VIEWER, CART, escalated, make_client

from healer.audit import AuditStore


def two_clusters(tmp_path: Path) -> tuple[AuditStore, dict[str, int]]:
    """An escalation recorded by the healer of each of east and west, in one store."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    ids = {}
    for name in ("east", "west"):
        writer = AuditStore(url, cluster=name)
        ids[name] = escalated(writer, CART)
        writer.close()
    return AuditStore(url), ids


def test_the_list_filters_by_cluster_and_names_each_incidents_cluster(tmp_path: Path) -> None:
    store, ids = two_clusters(tmp_path)
    try:
        with make_client(store) as api:
            every = api.get("/api/v1/incidents", headers=AS_VIEWER).json()["items"]
            assert {(i["id"], i["cluster"]) for i in every} == {(v, k) for k, v in ids.items()}
            for name in ("east", "west"):
                page = api.get("/api/v1/incidents", params={"cluster": name}, headers=AS_VIEWER)
                assert [i["id"] for i in page.json()["items"]] == [ids[name]]
            none = api.get("/api/v1/incidents", params={"cluster": "north"}, headers=AS_VIEWER)
            assert none.json()["items"] == []
            bad = api.get("/api/v1/incidents", params={"cluster": "No Such"}, headers=AS_VIEWER)
            assert bad.status_code == 422 and "cluster" in bad.text
    finally:
        store.close()


def test_the_overview_tallies_per_cluster_when_there_are_several(tmp_path: Path) -> None:
    store, _ = two_clusters(tmp_path)
    try:
        with make_client(store) as api:
            day, _week = api.get("/api/v1/overview", headers=AS_VIEWER).json()["windows"]
            assert {row["name"]: row["counts"] for row in day["by_cluster"]} == {
                "east": {"escalated": 1},
                "west": {"escalated": 1},
            }
            api.post("/login", data={"token": AS_OPERATOR["Authorization"].split()[1]})
            page = api.get("/").text
            assert "Incidents by cluster and outcome" in page
            listing = api.get("/incidents", params={"cluster": "west"}).text
            assert "west:" in listing and "east:" not in listing
    finally:
        store.close()


def test_one_cluster_shows_no_cluster_tally(store: AuditStore) -> None:
    escalated(store, CART)
    with make_client(store) as api:
        api.post("/login", data={"token": AS_OPERATOR["Authorization"].split()[1]})
        assert "Incidents by cluster" not in api.get("/").text
        day, _ = api.get("/api/v1/overview", headers=AS_VIEWER).json()["windows"]
        assert [row["name"] for row in day["by_cluster"]] == ["default"]


def test_a_release_belongs_to_the_cluster_whose_healer_received_it(tmp_path: Path) -> None:
    """The same namespace and name in two clusters are two workloads: each healer's
    diagnoser reads its own cluster's releases only."""
    from datetime import timedelta

    from tests.unit.diagnose.test_release_names import release

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    east, west = AuditStore(url, cluster="east"), AuditStore(url, cluster="west")
    try:
        told = release()
        east.record_release(told, known=True, sender="ci", at=told.at)
        span = {"since": told.at - timedelta(minutes=1), "until": told.at + timedelta(minutes=1)}
        assert [r.release for r in east.releases_of(told.workload, **span)] == [told]
        assert west.releases_of(told.workload, **span) == []
    finally:
        east.close()
        west.close()
