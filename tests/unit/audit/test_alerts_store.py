"""Migration 0005 (``alembic upgrade head`` through ``migrate.upgrade``, which the store
runs on opening: there is no alembic.ini) and the store's alerts: stored per firing,
settled by the daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from healer.audit import AuditStore, migrate
from healer.errors import UnknownRecord
from healer.types import Alert, AlertDisposition, AlertStatus

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def firing(fingerprint: str = "a1", status: AlertStatus = AlertStatus.FIRING) -> Alert:
    ends = T0 + timedelta(minutes=5) if status is AlertStatus.RESOLVED else None
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "cart"}
    return Alert(fingerprint, "KubePodCrashLooping", status, T0, ends, labels, {})


def test_upgrade_to_head_on_a_fresh_database_makes_the_alerts_table(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert int(migrate.head()) >= 5
    assert "alerts" in inspect(engine).get_table_names()
    engine.dispose()


def test_upgrade_from_the_previous_head_keeps_incidents_and_adds_alerts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0004")
    assert "alerts" not in inspect(engine).get_table_names()
    with engine.begin() as db:
        db.exec_driver_sql(
            "INSERT INTO incidents VALUES (1, 'shop', 'Deployment', 'cart', 'open',"
            " '2024-05-01 12:00:00', NULL, 0.9, NULL, NULL, NULL, NULL, NULL,"
            " '2024-05-01 12:00:00')"
        )
    engine.dispose()
    store = AuditStore(f"sqlite:///{path}")  # opening migrates
    assert migrate.current(create_engine(f"sqlite:///{path}")) == migrate.head()
    store.record_alerts([firing()], at=T0)
    (pending,) = store.pending_alerts()
    store.settle_alert(pending.id, AlertDisposition.JOINED, detail="joined", at=T0, incident_id=1)
    detail = store.get_incident(1)
    assert detail is not None and [a.alert.fingerprint for a in detail.alerts] == ["a1"]
    store.close()


def test_downgrade_to_the_previous_head_drops_only_the_alerts(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate.upgrade(engine)
    with engine.begin() as connection:
        command.downgrade(migrate._config(connection), "0004")
    tables = set(inspect(engine).get_table_names())
    assert "alerts" not in tables and {"incidents", "actions"} <= tables
    engine.dispose()


def test_one_delivery_naming_a_firing_twice_stores_it_once(store: AuditStore) -> None:
    recorded = store.record_alerts([firing(), firing()], at=T0)
    assert (recorded.new, recorded.unchanged) == (1, 1)
    assert len(store.pending_alerts()) == 1


def test_a_resolution_arriving_first_is_stored_resolved_and_never_pending(
    store: AuditStore,
) -> None:
    store.record_alerts([firing(status=AlertStatus.RESOLVED)], at=T0)
    assert store.record_alerts([firing()], at=T0).unchanged == 1  # late firing: no change
    assert store.pending_alerts() == []


def test_settling_names_an_unknown_alert_or_incident(store: AuditStore) -> None:
    store.record_alerts([firing()], at=T0)
    (pending,) = store.pending_alerts()
    with pytest.raises(UnknownRecord, match="alert 99"):
        store.settle_alert(99, AlertDisposition.DENIED, detail="", at=T0)
    with pytest.raises(UnknownRecord, match="incident 7"):
        store.settle_alert(pending.id, AlertDisposition.JOINED, detail="", at=T0, incident_id=7)
    store.settle_alert(pending.id, AlertDisposition.DENIED, detail="kube-system denied", at=T0)
    assert store.pending_alerts() == []
