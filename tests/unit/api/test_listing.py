"""The incident list's page cache: served while nothing changed, never after a write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from healer.api.listing import PageCache
from healer.audit import AuditStore
from healer.errors import StoreError
from healer.types import ActionKind, ActionRecord, ActionStatus
from tests.unit.api.test_app import CART, LEDGER, app_for, at, finding


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with app_for(store) as c:
        yield c


def ids(client: TestClient, **params: str) -> list[int]:
    response = client.get("/api/v1/incidents", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_a_new_incident_is_listed_at_once(client: TestClient, store: AuditStore) -> None:
    first = store.open_incident(finding())
    assert ids(client) == [first]
    assert ids(client) == [first]  # now kept
    second = store.open_incident(finding(LEDGER))
    assert ids(client) == [second, first]


def test_a_changed_incident_is_listed_changed(client: TestClient, store: AuditStore) -> None:
    iid = store.open_incident(finding())
    page = client.get("/api/v1/incidents").json()
    assert page["items"][0]["action"] is None  # now kept
    record = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.SUCCEEDED, at(1), at(2))
    store.record_action(iid, record)
    page = client.get("/api/v1/incidents").json()
    assert (page["items"][0]["action"], page["items"][0]["action_status"]) == (
        "restart",
        "succeeded",
    )


def test_pages_of_other_queries_are_not_mixed_up(client: TestClient, store: AuditStore) -> None:
    cart, ledger = store.open_incident(finding()), store.open_incident(finding(LEDGER))
    assert ids(client, namespace="shop") == [cart]
    assert ids(client, namespace="bank") == [ledger]
    assert ids(client, namespace="shop") == [cart]


def test_a_tampered_cursor_is_refused_even_after_the_real_one_was_kept(
    client: TestClient, store: AuditStore
) -> None:
    for i in range(3):
        store.open_incident(finding(t=i))
    cursor = client.get("/api/v1/incidents", params={"limit": 1}).json()["next_cursor"]
    assert client.get("/api/v1/incidents", params={"cursor": cursor}).status_code == 200
    answer = client.get("/api/v1/incidents", params={"cursor": cursor[:-2] + "AA"})
    assert answer.status_code == 400
    assert "cursor" in answer.json()["detail"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_page_is_kept_for_one_write_count_and_its_ttl() -> None:
    clock = Clock()
    cache = PageCache(ttl_s=1.0, clock=clock)
    cache.put("q", b"page", write_count=7)
    assert cache.get("q", write_count=7) == b"page"
    assert cache.get("other", write_count=7) is None
    assert cache.get("q", write_count=8) is None
    clock.now += 1.0
    assert cache.get("q", write_count=7) is None


def test_a_full_cache_starts_over() -> None:
    cache = PageCache(max_pages=2)
    for key in ("a", "b", "c"):
        cache.put(key, key.encode(), write_count=0)
    assert [cache.get(k, write_count=0) for k in ("a", "b", "c")] == [None, None, b"c"]


def test_the_store_counts_its_writes(store: AuditStore) -> None:
    before = store.write_count
    store.list_incidents()
    assert store.write_count == before
    store.open_incident(finding())
    assert store.write_count > before


def test_a_kept_page_still_needs_a_valid_token(client: TestClient, store: AuditStore) -> None:
    store.open_incident(finding())
    assert client.get("/api/v1/incidents?limit=5").status_code == 200  # now kept
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dmlld2VyLXRva2Vu"},
    ):
        answer = client.get("/api/v1/incidents?limit=5", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_kept_page_is_the_page_the_route_answered(client: TestClient, store: AuditStore) -> None:
    for i in range(3):
        store.open_incident(finding(t=i))
    first = client.get("/api/v1/incidents?limit=2")
    kept = client.get("/api/v1/incidents?limit=2")
    assert kept.content == first.content
    assert kept.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert client.post("/api/v1/incidents?limit=2").status_code == 405


def test_concurrent_requests_for_a_page_not_kept_load_it_once() -> None:
    cache = PageCache()
    loads: list[int] = []

    async def load() -> bytes:
        loads.append(1)
        await asyncio.sleep(0.01)
        return b"page"

    async def many() -> list[bytes]:
        asking = (cache.get_or_load("q", write_count=3, load=load) for _ in range(20))
        return await asyncio.gather(*asking)

    assert asyncio.run(many()) == [b"page"] * 20
    assert len(loads) == 1
    assert asyncio.run(cache.get_or_load("q", write_count=4, load=load)) == b"page"
    assert len(loads) == 2  # a write in between: read again


def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    cache = PageCache()

    async def fail() -> bytes:
        await asyncio.sleep(0.01)
        raise StoreError("cannot list incidents: disk I/O error")

    async def many() -> list[BaseException | bytes]:
        asking = (cache.get_or_load("q", write_count=0, load=fail) for _ in range(3))
        return await asyncio.gather(*asking, return_exceptions=True)

    assert all(isinstance(r, StoreError) for r in asyncio.run(many()))
    assert cache.get("q", write_count=0) is None
