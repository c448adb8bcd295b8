"""Migration 0004: actions stored as ``delete_pod`` read back as ``evict``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from healer.audit import AuditStore, migrate
from healer.types import ActionKind, ActionStatus


def test_delete_pod_rows_read_back_as_evict(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0003")
    step = (
        '{"kind": "delete_pod", "status": "intended", "target": {"namespace": "shop",'
        ' "kind": "Deployment", "name": "cart"}, "request": {"action": "delete_pod",'
        ' "params": {}}}'
    )
    with engine.begin() as db:
        db.exec_driver_sql(
            "INSERT INTO incidents VALUES (1, 'shop', 'Deployment', 'cart', 'open',"
            " '2024-05-01 12:00:00', NULL, 0.9, NULL, NULL, 'delete_pod', 'intended', NULL,"
            " '2024-05-01 12:00:00')"
        )
        db.exec_driver_sql(
            "INSERT INTO incident_steps (id, incident_id, seq, kind, at, data, actor)"
            " VALUES (1, 1, 1, 'action', '2024-05-01 12:00:00', ?, '')",
            (step,),
        )
        db.exec_driver_sql(
            "INSERT INTO actions (id, incident_id, kind, namespace, workload_kind, name,"
            " status, intent, request, created, actor) VALUES (1, 1, 'delete_pod', 'shop',"
            " 'Deployment', 'cart', 'intended', '{}', ?, '2024-05-01 12:00:00', '')",
            ('{"action": "delete_pod", "params": {}}',),
        )
    engine.dispose()

    store = AuditStore(f"sqlite:///{path}")
    [action] = store.actions()
    assert (action.kind, action.status) == (ActionKind.EVICT, ActionStatus.INTENDED)
    detail = store.get_incident(1)
    assert detail is not None and detail.timeline[0].data["kind"] == "delete_pod"
    store.close()
