"""The acting lock beside a SQLite file: replicas sharing the file take turns."""

from __future__ import annotations

from pathlib import Path

from healer.audit import AuditStore
from tests.acting import held_against


def test_two_stores_on_one_file_act_one_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    first, second = AuditStore(url), AuditStore(url)
    try:
        with held_against(first, second, wait_s=0.5):
            pass
        assert (tmp_path / "audit.db.acting").exists()
    finally:
        first.close()
        second.close()


def test_an_in_memory_store_locks_between_threads() -> None:
    store = AuditStore("sqlite://")
    try:
        with store.acting():
            pass
        with store.acting():  # released: taken again
            pass
    finally:
        store.close()
