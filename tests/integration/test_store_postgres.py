"""The audit store on a real PostgreSQL server: the one ``HEALER_TEST_POSTGRES_URL`` names
(``postgresql+psycopg://user@host:port/db``; its tables are dropped and remade), else a
throwaway local one (local_postgres.py).

The migrations must make the schema the code describes, and the store must behave as
on SQLite: lifecycle, reviews, feedback, filters, guard history, and concurrent writers
appending steps to one incident without losing or duplicating any.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from local_postgres import postgres_url
from sqlalchemy import create_engine, text

from healer.audit import AuditStore, FeedbackInput, IncidentFilter, StepKind
from healer.audit.tables import Base
from healer.errors import IllegalTransition, ReviewConflict, UnknownRecord
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    IncidentStatus,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    Verdict,
    WorkloadRef,
)

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with postgres_url() as found:
        yield found


@pytest.fixture
def pg(url: str) -> Iterator[AuditStore]:
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("DROP SCHEMA public CASCADE"))
        db.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    store = AuditStore(url, identity="pg-test")
    yield store
    store.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding(t: float = 0.0, wl: WorkloadRef = CART) -> Finding:
    deviation = SignalDeviation(Signal.MEMORY, 0.9, 0.4, 6.5, Direction.UP)
    return Finding(wl, at(t), 0.96, (deviation,), onset=at(t - 120), model_version="m-1")


def pending(store: AuditStore, t: float = 0.0) -> tuple[int, int]:
    iid = store.open_incident(finding(t))
    store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs."))
    guards = (GuardResult("cooldown", True, "none"), GuardResult("rate_limit", False, "11/10"))
    plan = Plan(CART, "restart", ActionKind.RESTART, {}, Mode.APPROVAL, guards, "leak", 600.0)
    store.record_plan(iid, plan, at=at(t + 10))
    record = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.PENDING_APPROVAL, at(t), at(t)
    )
    return iid, store.record_action(iid, record)


def test_migrations_make_the_schema_the_code_describes(pg: AuditStore, url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
    AuditStore(url).close()  # opening again migrates nothing and fails nothing


def test_lifecycle_reviews_feedback_and_counters(pg: AuditStore) -> None:
    iid, action_id = pending(pg)
    assert pg.approve_action(action_id, by="olga", reason="go", at=at(20)).status == "approved"
    with pytest.raises(ReviewConflict):
        pg.reject_action(action_id, by="olga", reason="no", at=at(21))
    with pytest.raises(UnknownRecord):
        pg.approve_action(12345, by="olga", reason="go", at=at(21))
    taken = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.SUCCEEDED, at(30), at(31)
    )
    assert pg.record_action(iid, taken) == action_id
    pg.record_outcome(iid, Outcome(OutcomeKind.HEALED, "ok", at(300)))
    label = FeedbackInput(
        Verdict.TRUE_POSITIVE, Cause.MEMORY_LEAK, ActionKind.RESTART, "olga", at(400)
    )
    pg.record_feedback(iid, label)
    detail = pg.get_incident(iid)
    assert detail is not None
    assert [s.kind for s in detail.timeline] == [
        StepKind.FINDING, StepKind.DIAGNOSIS, StepKind.PLAN, StepKind.ACTION,
        StepKind.REVIEW, StepKind.ACTION, StepKind.OUTCOME, StepKind.FEEDBACK,
    ]  # fmt: skip
    assert detail.summary.status == IncidentStatus.RESOLVED
    assert detail.timeline[0].at == at(0) and detail.timeline[0].at.tzinfo is not None
    [feedback] = pg.feedback(since=at(400))
    assert (feedback.window_start, feedback.window_end) == (at(-120), at(300))
    assert pg.action_counts() == {(ActionKind.RESTART, ActionStatus.SUCCEEDED): 1}
    assert pg.guard_block_counts() == {"rate_limit": 1}
    history = pg.action_history(now=at(600), window_s=3600)
    assert history.last_action_at == {CART: at(30)}
    assert history.recent_action_times == (at(30),)


def test_filters_and_pages(pg: AuditStore) -> None:
    ids = [pg.open_incident(finding(600 * i)) for i in range(5)]

    def listed(where: IncidentFilter, limit: int = 50) -> list[int]:
        return [s.id for s in pg.list_incidents(where, limit=limit)]

    assert listed(IncidentFilter(before_id=ids[3]), limit=2) == [ids[2], ids[1]]
    assert listed(IncidentFilter(since=at(1200 - 120))) == ids[:1:-1]
    assert listed(IncidentFilter(namespace="shop", workload="cart"), limit=1) == [ids[-1]]
    assert pg.list_incidents(IncidentFilter(status=IncidentStatus.RESOLVED)) == []
    # Across the network the event loop never reads itself: "read it on a thread".
    assert pg.list_incident_rows_now(max_steps=1_000_000) is None


def test_a_rollout_is_one_step_per_action_on_postgresql(pg: AuditStore) -> None:
    iid = pg.open_incident(finding(0))
    taken = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.SUCCEEDED, at(10), at(11))
    pg.record_action(iid, taken)
    for seconds in (40, 70):
        pg.record_rollout(iid, at=at(seconds), detail="rollout complete (3/3 ready)")
    detail = pg.get_incident(iid)
    assert detail is not None
    rollouts = [s for s in detail.timeline if s.kind == StepKind.ROLLOUT]
    assert [s.at for s in rollouts] == [at(40)]


def test_concurrent_writers_keep_every_step(pg: AuditStore) -> None:
    iid = pg.open_incident(finding())
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(20):
                pg.record_diagnosis(iid, Diagnosis(CART, Cause.OVERLOAD, 0.5, f"{worker}-{i}"))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    detail = pg.get_incident(iid)
    assert detail is not None
    assert len(detail.timeline) == 1 + 80
    assert [s.actor for s in detail.timeline] == ["pg-test"] * 81


def test_status_moves_as_on_sqlite_and_a_review_racing_a_close_ends_one_way(
    pg: AuditStore,
) -> None:
    iid, action_id = pending(pg)
    taken = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.SUCCEEDED, at(30), at(31)
    )
    with pytest.raises(IllegalTransition, match=f"incident {iid} is pending_approval"):
        pg.record_action(iid, taken)
    answers: list[str] = []

    def approve() -> None:
        try:
            pg.approve_action(action_id, by="olga", reason="go", at=at(40))
            answers.append("approved")
        except ReviewConflict:
            answers.append("conflict")

    threads = [
        threading.Thread(target=approve),
        threading.Thread(
            target=pg.record_outcome, args=(iid, Outcome(OutcomeKind.ESCALATED, "gone", at(40)))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Approved then withdrawn by the close, or withdrawn first and the approval refused.
    assert answers in (["approved"], ["conflict"])
    view = pg.get_action(action_id)
    assert view is not None and view.status is ActionStatus.EXPIRED
    assert pg.incident(iid).status is IncidentStatus.RESOLVED
    assert pg.approved_actions() == []


def test_the_overview_reads_on_postgresql(pg: AuditStore) -> None:
    healed, escalated = pg.open_incident(finding(0)), pg.open_incident(finding(30))
    pg.record_diagnosis(healed, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "leak"))
    pg.record_outcome(healed, Outcome(OutcomeKind.HEALED, "ok", at(600)))
    pg.record_outcome(escalated, Outcome(OutcomeKind.ESCALATED, "no playbook", at(60)))
    tally = pg.tally(since=at(-3600))
    assert tally.incidents == {
        (Cause.MEMORY_LEAK, OutcomeKind.HEALED): 1,
        (None, OutcomeKind.ESCALATED): 1,
    }
    assert tally.detect_s == {Cause.MEMORY_LEAK: 120.0, None: 120.0}
    assert tally.heal_s == {Cause.MEMORY_LEAK: 720.0}
    assert [i.id for i in pg.unacknowledged()[0]] == [escalated]
    pg.acknowledge(escalated, by="olga", at=at(900))
    with pytest.raises(ReviewConflict):
        pg.acknowledge(escalated, by="ivan", at=at(901))
    made = pg.opt_out(CART, by="olga", reason="", at=at(0), until=at(3600))
    assert pg.opted_out(CART, now=at(10)) == made


def test_list_entries_on_postgres_are_what_the_model_writes_and_cleared_by_foreign_writes(
    pg: AuditStore, url: str
) -> None:
    """The entries the ORM keeps on PostgreSQL (its times come back as timestamptz),
    and the trigger that clears an entry a writer left behind its columns."""
    from healer.api.schemas import IncidentItem, IncidentPage
    from healer.audit import listed

    iid, _ = pending(pg)
    other, _ = pending(pg, t=60)

    def pages() -> tuple[bytes, bytes]:
        items = [IncidentItem.from_summary(s) for s in pg.list_incidents(limit=10)]
        model = IncidentPage(items=items, next_cursor=None).model_dump_json().encode()
        return listed.page_json([e for _, e in pg.list_incident_entries(limit=10)], None), model

    stored, model = pages()
    assert stored == model
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("UPDATE incidents SET status = 'resolved' WHERE id = :id"), {"id": iid})
        kept = dict(db.execute(text("SELECT id, listed FROM incidents")).all())
    engine.dispose()
    assert kept[iid] is None and kept[other] is not None
    stored, model = pages()
    assert stored == model and b'"status":"resolved"' in stored
