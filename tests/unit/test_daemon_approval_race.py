"""Two shards taking approved actions at once share one action budget.

Each shard is a ``Healer`` with its own store connection to one SQLite file, so their
acting lock is the ``flock`` beside it. The first shard, between reading the budget and
spending it, lets the second take its approval in a thread: the second must wait for
the first's action and then find the budget spent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from test_daemon import OVERLOAD, SEARCH, SIGNALS, T0, FakeActuator, ScriptedDetector

from healer.audit import AuditStore
from healer.config import Settings, load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.types import ActionStatus, Frame, Mode, Plan, WorkloadRef

REPO = Path(__file__).resolve().parents[2]
WEB = WorkloadRef("web", "Deployment", "storefront")


class TwoNamespaces:
    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        workloads = (SEARCH, WEB)
        values = np.zeros((len(workloads), len(SIGNALS), 1))
        return Frame(np.array([until.timestamp()]), workloads, SIGNALS, values)


class PausingStore(AuditStore):
    """The store of the first shard: once its approved plan is recorded (the budget
    read, the action not yet taken), it runs ``pause`` before going on."""

    pause: Callable[[], None] | None = None

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime) -> None:
        super().record_plan(incident_id, plan, at=at)
        pause, self.pause = self.pause, None
        if pause is not None:
            pause()


@dataclass
class Shard:
    healer: Healer
    detector: ScriptedDetector
    actuator: FakeActuator
    store: AuditStore

    def cycle(self, at: datetime) -> None:
        self.healer.cycle(at)


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[tuple[Shard, Shard]]:
    settings = load_settings(None, guards={"mode": "approval", "max_actions_per_window": 1})
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    built = tuple(
        shard(store, settings, namespace)
        for store, namespace in ((PausingStore(url), "shop"), (AuditStore(url), "web"))
    )
    yield built[0], built[1]
    for one in built:
        one.store.close()


def shard(store: AuditStore, settings: Settings, namespace: str) -> Shard:
    detector, actuator = ScriptedDetector(), FakeActuator()
    healer = Healer(
        source=TwoNamespaces(),
        detector=detector,
        actuator=actuator,
        store=store,
        playbooks=load_playbooks(REPO / "playbooks"),
        settings=settings,
        scope=lambda ns: ns == namespace,
    )
    return Shard(healer, detector, actuator, store)


def test_two_approvals_racing_on_a_budget_of_one_take_one_action(
    shards: tuple[Shard, Shard],
) -> None:
    shop, web = shards
    shop.detector.anomalous = {SEARCH: OVERLOAD}
    web.detector.anomalous = {WEB: OVERLOAD}
    for one in (shop, web):
        one.cycle(T0)
    pending = shop.store.actions(status=ActionStatus.PENDING_APPROVAL)
    assert sorted(str(a.workload) for a in pending) == sorted([str(SEARCH), str(WEB)])
    for action in pending:
        shop.store.approve_action(action.id, by="ops", reason="go", at=T0)

    later = T0 + timedelta(seconds=30)
    second = threading.Thread(target=web.cycle, args=(later,))

    def let_the_other_shard_try() -> None:
        second.start()
        second.join(timeout=2.0)  # blocked on the acting lock: it stays alive

    assert isinstance(shop.store, PausingStore)
    shop.store.pause = let_the_other_shard_try
    shop.cycle(later)
    second.join(timeout=60)
    assert not second.is_alive(), "the second shard never got the acting lock"

    applied = shop.actuator.applied + web.actuator.applied
    taken = [p.workload for p in applied if p.mode is Mode.AUTO]
    assert taken == [SEARCH], taken  # the first shard's; the second's waited, then found
    (blocked,) = shop.store.actions(status=ActionStatus.BLOCKED)
    assert blocked.workload == WEB
    assert blocked.error is not None and "rate_limit" in blocked.error, blocked.error
