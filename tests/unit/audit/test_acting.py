"""The acting lock beside a SQLite file: replicas sharing the file take turns."""

from __future__ import annotations

import threading
from pathlib import Path

from healer.audit import AuditStore


def test_two_stores_on_one_file_act_one_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    first, second = AuditStore(url), AuditStore(url)
    entered = threading.Event()

    def take() -> None:
        with second.acting():
            entered.set()

    try:
        waiting = threading.Thread(target=take)
        with first.acting():
            waiting.start()
            assert not entered.wait(0.5), "both held the lock at once"
        assert entered.wait(30)
        waiting.join()
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
