"""The incident list's page cache: served while nothing changed, never after a write."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from healer.api import create_app, listing, routes
from healer.api.listing import ListQuery, PageCache, parse_query
from healer.audit import AuditStore
from healer.audit.views import IncidentFilter
from healer.errors import StoreError
from healer.logs import Throttled
from healer.types import ActionKind, ActionRecord, ActionStatus, Cause, Diagnosis
from tests.unit.api.test_app import AUTH, CART, LEDGER, SETTINGS, app_for, at, finding


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


def test_a_cache_holding_its_bytes_starts_over() -> None:
    """Pages kept are bounded by their bytes too; a page put again counts once."""
    cache = PageCache(max_bytes=10)
    for _ in range(3):
        cache.put("a", b"aaaa", write_count=0)
    cache.put("b", b"bbbb", write_count=0)
    assert [cache.get(k, write_count=0) for k in ("a", "b")] == [b"aaaa", b"bbbb"]
    cache.put("c", b"ccc", write_count=0)  # 11 bytes: over
    assert [cache.get(k, write_count=0) for k in ("a", "b", "c")] == [None, None, b"ccc"]


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


def test_the_route_declares_exactly_the_parameters_the_fast_path_takes() -> None:
    """A query string ``ListQuery`` takes is answered before the framework; the route
    must take it alike: the same names, types with their limits, and defaults."""
    hints = typing.get_type_hints(routes.list_incidents, include_extras=True)
    declared = inspect.signature(routes.list_incidents).parameters
    route = {
        name: (hints[name], p.default)
        for name, p in declared.items()
        if name not in {"_", "request", "store", "ctx"}
    }
    fields = typing.get_type_hints(ListQuery, include_extras=True)
    fast = {name: (fields[name], f.default) for name, f in ListQuery.model_fields.items()}
    assert route == fast


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"namespace=shop&status=open",
        b"workload=cart&cause=memory_leak&limit=7",
        b"since=2024-05-01T13:00:00%2B01:00&until=2024-05-02T00:00:00Z",
        b"limit=%207",  # lax, as FastAPI's own validation is
    ],
)
def test_a_plainly_valid_query_is_parsed_for_the_fast_path(query: bytes) -> None:
    assert isinstance(parse_query(query), ListQuery)


@pytest.mark.parametrize(
    "query",
    [
        b"namespace=shop&namespace=bank",  # the route takes the last; it decides
        b"page=2",  # the route ignores what it does not know
        b"limit=0",
        b"limit=501",
        b"status=sleeping",
        b"since=2024-05-01T12:00:00",  # no offset
        b"namespace=Not_A_Namespace",
        b"cursor=" + b"x" * 101,
    ],
)
def test_anything_else_is_left_to_the_route(query: bytes) -> None:
    assert parse_query(query) is None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=2",
        "namespace=shop",
        "namespace=shop&workload=cart&status=open",
        "cause=memory_leak",
        "since=2024-05-01T11:59:00Z&until=2024-05-01T13:00:00%2B01:00",
        "limit=%201",
        "limit=1&cursor={cursor}",
        "limit=1&cursor=1.forged",
        "namespace=shop&namespace=bank",
        "limit=0",
        "status=sleeping",
    ],
)
def test_the_fast_path_answers_what_the_route_answers(
    client: TestClient, store: AuditStore, query: str
) -> None:
    """Each query twice: as it is (answered before the framework when plainly valid)
    and with a parameter the route ignores (so answered by the route)."""
    for i in range(3):
        iid = store.open_incident(finding(CART if i % 2 else LEDGER, t=i))
        store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs."))
    cursor = client.get("/api/v1/incidents?limit=1").json()["next_cursor"]
    path = "/api/v1/incidents?" + query.format(cursor=cursor)
    fast, route = client.get(path), client.get(path + "&by=route")
    assert (fast.status_code, fast.content) == (route.status_code, route.content)
    # Answered ahead of the middleware stack, it still carries every header (security too).
    assert sorted(fast.headers.items()) == sorted(route.headers.items())


def test_a_store_that_fails_is_a_503_on_the_list_too(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("DROP TABLE incidents")
    raw.close()
    try:
        with app_for(store) as client:
            response = client.get("/api/v1/incidents?namespace=shop")
        assert response.status_code == 503
        assert response.json() == {"detail": "audit store unavailable"}
    finally:
        store.close()


def test_a_store_that_fails_is_read_once_and_answered_as_the_route_does(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that cannot answer is asked once: the route, asked again, would wait for
    it as long again (store.unavailable_s) to give the same 503."""
    reads: list[str] = []

    def failing(*args: object, **kwargs: object) -> None:
        reads.append("read")
        raise StoreError("cannot list incidents: connection refused")

    monkeypatch.setattr(store, "list_incident_entries", failing)
    monkeypatch.setattr(store, "list_incident_entries_now", failing)
    with app_for(store) as client:
        fast = client.get("/api/v1/incidents?namespace=shop")
        assert len(reads) == 1
        route = client.get("/api/v1/incidents?namespace=shop&by=route")
    assert (fast.status_code, fast.content) == (503, route.content)
    assert route.json() == {"detail": "audit store unavailable"}
    assert sorted(fast.headers.items()) == sorted(route.headers.items())


def test_a_plainly_valid_query_never_reaches_the_framework(store: AuditStore) -> None:
    """With the route's dependencies broken, a valid query is still answered (before
    the framework); only what the route has to judge fails."""
    store.open_incident(finding())
    app = create_app(store=store, settings=SETTINGS)
    app.state.context = None  # the route's ContextDep raises on it
    with TestClient(app, headers=AUTH, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/incidents?namespace=shop&limit=3").status_code == 200
        assert client.get("/api/v1/incidents?namespace=shop&page=2").status_code == 500


def test_a_page_read_on_a_reader_thread_is_the_page_read_at_once(
    client: TestClient, store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose read runs past ``MAX_STEPS_NOW`` is read again on a reader thread:
    the same bytes either way, for every filter and through a cursor."""
    for i in range(6):
        iid = store.open_incident(finding(CART if i % 2 else LEDGER, t=i))
        store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs."))
    cursor = client.get("/api/v1/incidents?limit=2").json()["next_cursor"]
    queries = ["", "limit=2", f"limit=2&cursor={cursor}", "namespace=shop&cause=memory_leak"]
    at_once = {q: client.get(f"/api/v1/incidents?{q}&n=1").content for q in queries}
    monkeypatch.setattr(listing, "MAX_STEPS_NOW", 1)
    threads: list[str] = []
    read = store.list_incident_entries

    def watched(where: IncidentFilter, *, limit: int) -> list[tuple[int, str]]:
        threads.append(threading.current_thread().name)
        return read(where, limit=limit)

    monkeypatch.setattr(store, "list_incident_entries", watched)
    for q in queries:
        assert client.get(f"/api/v1/incidents?{q}&n=2").content == at_once[q], q
    assert len(threads) == len(queries)
    assert all(name.startswith("incident-list") for name in threads), threads


def test_a_page_that_fails_ahead_of_the_framework_is_answered_by_the_route(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure of the list's own answer sends nothing: the route answers."""
    store.open_incident(finding())
    app = create_app(store=store, settings=SETTINGS)
    assert app.lists is not None

    async def broken(scope: object) -> bytes | None:
        raise RuntimeError("a bug in the fast path")

    with TestClient(app, headers=AUTH) as client:
        expected = client.get("/api/v1/incidents?limit=3&by=route")
        monkeypatch.setattr(app.lists, "_answer", broken)
        answer = client.get("/api/v1/incidents?limit=3")
    assert (answer.status_code, answer.content) == (200, expected.content)


def test_a_lasting_fault_of_the_list_answer_is_logged_once_a_minute(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault on every request logs its traceback once, then once a minute with the
    count of those left out, while the route answers each request."""
    store.open_incident(finding())
    app = create_app(store=store, settings=SETTINGS)
    assert app.lists is not None

    async def broken(scope: object) -> bytes | None:
        raise RuntimeError("a bug in the fast path")

    monkeypatch.setattr(app.lists, "_answer", broken)
    with TestClient(app, headers=AUTH) as client, capture_logs() as logs:
        for _ in range(3):  # the app's own throttle, within a second
            assert client.get("/api/v1/incidents?limit=3").status_code == 200
        now = [0.0]
        app.list_failures = Throttled(
            structlog.get_logger("test"), "incident_list_answer_failed", clock=lambda: now[0]
        )
        for second in (0.0, 1.0, 30.0, 59.0, 60.0, 61.0, 125.0):
            now[0] = second
            assert client.get("/api/v1/incidents?limit=3").status_code == 200
    failed = [e for e in logs if e["event"] == "incident_list_answer_failed"]
    assert [(e["suppressed"], e["since_s"], e["log_level"], e["exc_info"]) for e in failed] == [
        (0, None, "error", True),  # the app's: the two after it within the minute left out
        (0, None, "error", True),
        (3, 60.0, "error", True),
        (1, 65.0, "error", True),
    ]
    assert failed[0]["path"] == "/api/v1/incidents"


def test_a_list_request_with_a_body_is_judged_by_the_route(
    client: TestClient, store: AuditStore
) -> None:
    """The body limit is the app's: a GET that declares a body too large is refused
    (413) before any page, as by the route, not answered ahead of it."""
    store.open_incident(finding())
    too_large = {**AUTH, "Content-Length": str(10**9)}
    for path in ("/api/v1/incidents?limit=3", "/api/v1/incidents?limit=3&by=route"):
        assert client.get(path, headers=too_large).status_code == 413, path
