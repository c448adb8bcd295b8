"""Durability: SIGKILL a process busy writing incidents (and reading them in another
thread), then reopen the store: every step the process had been told was recorded is
there, every incident is consistent with its steps, and the database is intact."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healer.audit import AuditStore, StepKind
from healer.types import ActionStatus, IncidentStatus

pytestmark = pytest.mark.integration

WRITER = r"""
import sys, threading
from datetime import UTC, datetime, timedelta
from healer.audit import AuditStore
from healer.types import *

store = AuditStore(sys.argv[1], identity="writer")
t0 = datetime(2024, 5, 1, tzinfo=UTC)
def reader():
    while True:
        for s in store.list_incidents(limit=20):
            store.get_incident(s.id)
threading.Thread(target=reader, daemon=True).start()
for i in range(100000):
    wl = WorkloadRef("shop", "Deployment", f"w{i % 7}")
    now = t0 + timedelta(minutes=i)
    dev = SignalDeviation(Signal.CPU, 1.5, 0.5, 9.0, Direction.UP)
    iid = store.open_incident(Finding(wl, now, 0.9, (dev,), now, "m"))
    print(iid, "finding", flush=True)
    store.record_diagnosis(iid, Diagnosis(wl, Cause.OVERLOAD, 0.8, "busy"), at=now)
    print(iid, "diagnosis", flush=True)
    guards = (GuardResult("cooldown", True, "none"),)
    plan = Plan(wl, "scale", ActionKind.SCALE, {"replicas": 4}, Mode.AUTO, guards, "r", 60.0)
    store.record_plan(iid, plan, at=now)
    print(iid, "plan", flush=True)
    record = ActionRecord(ActionKind.SCALE, wl, {"verb": "PATCH"}, ActionStatus.SUCCEEDED, now, now)
    store.record_action(iid, record)
    print(iid, "action", flush=True)
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "ok", now + timedelta(seconds=30)))
    print(iid, "outcome", flush=True)
"""
KILL_AFTER_STEPS = 400
"""Steps acknowledged before the kill: ~80 incidents, well into a busy run."""


def test_sigkill_loses_no_recorded_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).close()  # migrate first, so the child is busy writing from the start
    child = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged: list[tuple[int, str]] = []
    deadline = time.monotonic() + 120
    while len(acknowledged) < KILL_AFTER_STEPS and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        iid, kind = line.split()
        acknowledged.append((int(iid), kind))
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert len(acknowledged) == KILL_AFTER_STEPS, "the writer did not get busy"

    with sqlite3.connect(tmp_path / "audit.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    raw.close()
    store = AuditStore(url)
    try:
        recorded = {}
        for summary in store.list_incidents(limit=100000):
            detail = store.get_incident(summary.id)
            assert detail is not None
            recorded[summary.id] = detail
        for iid, kind in acknowledged:
            assert StepKind(kind) in {s.kind for s in recorded[iid].timeline}, (iid, kind)
        for detail in recorded.values():
            kinds = [s.kind for s in detail.timeline]
            expected = ["finding", "diagnosis", "plan", "action", "outcome"][: len(kinds)]
            assert kinds == expected, "steps are whole and in order"
            assert all(s.actor == "writer" for s in detail.timeline)
            summary = detail.summary
            assert (summary.status == IncidentStatus.RESOLVED) == ("outcome" in kinds)
            assert (summary.action_status == ActionStatus.SUCCEEDED) == ("action" in kinds)
            assert len(detail.actions) == kinds.count("action")
        # The restarted daemon's view: only the incident cut short is unresolved.
        assert len(store.unresolved()) <= 1
    finally:
        store.close()
