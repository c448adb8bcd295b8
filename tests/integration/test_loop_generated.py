"""Generated playbooks and settings, run against the fault scenarios: whatever validates,
the loop keeps cycling and every incident ends in an outcome.

Each example writes a few playbooks as YAML files and loads them the way start-up does
(``load_playbooks``), builds settings the way ``healer run`` does (``load_settings``),
picks a fault scenario, sometimes with the Kubernetes API failing for a while, and runs
the loop on the simulated cluster in virtual time. A reviewer drawn with the example
approves or rejects what awaits approval, every ten minutes, as a person on the review
page would. Then the loop runs on for as long as the longest ``on_failure`` chain may
take to verify, and:

- no cycle failed and no incident step crashed (both are counted, and logged with a
  traceback: a bug);
- every incident opened before that last stretch ends resolved, with an outcome;
- no action is left intended: each one's request was sent and recorded, or ended.

Examples are bounded and drawn from a fixed seed (``derandomize``), so that a run in CI
is the run on a laptop; ``HYPOTHESIS_PROFILE=props-long`` draws more of them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from healer.actions import REGISTRY
from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.decide import Playbook, load_playbooks
from healer.decide.playbooks import ESCALATE
from healer.harness import SimHarness
from healer.sim.scenario import ApiFault, Scenario, load_scenario
from healer.types import ActionStatus, Cause, IncidentStatus, Mode, Signal, TargetKind

pytestmark = pytest.mark.integration

settings.register_profile(
    "props",
    max_examples=16,  # about 5 s of CPU each: a bounded share of the suite
    deadline=None,  # one example runs hours of simulated time
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "props-long",
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "props")

FAULT_SCENARIOS = (
    "memory-leak",
    "overload",
    "bad-release",
    "crash-loop",
    "cpu-hog",
    "pile-up",
    "storm",
    "mass-slowdown",
)
"""The scenarios with faults, and mass-slowdown: every workload slowed at once, a case
for the anomaly brake."""

AFTER_LAST_EVENT_S = 1800.0
"""The scenario runs this long past its last event's start: every fault of the scenarios
above is found and diagnosed well within half an hour with the default detector."""
REVIEW_EVERY_S = 600.0
"""A person looks at the review queue this often."""
FAULT_BEFORE_S = 3600.0
"""API faults lie within the scenario's first hour, so that the stretch that settles
the incidents has a working API."""

CAUSES = [str(c) for c in Cause if c is not Cause.UNKNOWN]
SIGNALS = [str(s) for s in Signal]
MODES = ["auto", "auto", "approval", "approval", "dry_run", "dry-run"]
NAMESPACES = st.sampled_from([[]] * 4 + [["shop"], ["elsewhere"]])
"""Mostly any namespace: a playbook or guard that never lets an action through reaches
little of the loop."""


@dataclass(frozen=True)
class Example:
    scenario: Scenario
    books: list[dict[str, Any]]
    overrides: dict[str, Any]
    approvals: list[bool]
    """The reviewer's decisions, in turn: True approves, False rejects."""


def playbooks(count: int, order: list[int]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """``count`` playbooks; playbook i may fall back to j when j comes after i in
    ``order``, so every chain ends in ``escalate`` (a loop is refused at load)."""
    rank = {book: position for position, book in enumerate(order)}
    return st.tuples(
        *(playbook(i, [f"pb-{j}" for j in range(count) if rank[j] > rank[i]]) for i in range(count))
    ).map(list)


@st.composite
def playbook(draw: st.DrawFn, index: int, later: list[str]) -> dict[str, Any]:
    # Node actions belong to the node watch and are refused in a playbook.
    workload_kinds = sorted(str(k) for k, a in REGISTRY.items() if TargetKind.NODE not in a.targets)
    kind = draw(st.sampled_from([*workload_kinds, "delete_pod"]))
    params: dict[str, Any] = {}
    if kind == "scale":
        params = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "headroom": st.floats(1.0, 4.0),
                    "max_step_factor": st.floats(1.1, 5.0),
                },
            )
        )
    return {
        "name": f"pb-{index}",
        "description": "generated",
        "match": {
            "causes": draw(st.lists(st.sampled_from(CAUSES), min_size=2, unique=True)),
            "min_confidence": draw(st.floats(0.0, 0.95)),
            "signals": draw(
                st.one_of(st.just([]), st.lists(st.sampled_from(SIGNALS), unique=True))
            ),
            "namespaces": draw(NAMESPACES),
        },
        "action": {"kind": kind, "params": params},
        "mode": draw(st.sampled_from(MODES)),
        "verify": {
            "within_s": draw(st.floats(30.0, 900.0)),
            "signals": draw(
                st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=3, unique=True)
            ),
        },
        "on_failure": draw(st.sampled_from([ESCALATE, *later])),
    }


@st.composite
def overrides(draw: st.DrawFn) -> dict[str, Any]:
    """Settings within the ranges an operator would plausibly write, each left at its
    default about half the time (a guard that blocks every action reaches little of the
    loop); validation decides the rest, ``load_settings`` raising fails the example."""
    seconds = st.floats(0.0, 3600.0)
    guards = {
        "mode": draw(st.sampled_from([Mode.AUTO, Mode.AUTO, Mode.APPROVAL, Mode.DRY_RUN])).value,
        **draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "cooldown_s": seconds,
                    "rate_limit_window_s": st.floats(1.0, 3600.0),
                    "max_actions_per_window": st.integers(0, 10),
                    "max_in_flight": st.integers(0, 5),
                    "anomaly_brake_share": st.floats(0.0, 1.0),
                    "anomaly_brake_min_anomalous": st.integers(1, 5),
                    "anomaly_brake_window_s": st.floats(1.0, 3600.0),
                    "anomaly_brake_min_workloads": st.integers(1, 6),
                    "allowed_namespaces": NAMESPACES,
                    "denied_namespaces": st.sampled_from([[], ["kube-system"], ["shop"]]),
                    "min_replicas": st.integers(0, 4),
                    "max_replicas": st.integers(4, 20),  # never below min_replicas
                    "max_scale_factor": st.floats(1.1, 4.0),
                    "flip_back_window_s": seconds,
                },
            )
        ),
    }
    daemon = {
        # 900 s is longer than a review slice: cycles keep their own schedule.
        "interval_s": draw(st.sampled_from([15.0, 30.0, 60.0, 120.0, 900.0])),
        **draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "window_s": st.floats(600.0, 7200.0),
                    "verify_stable_s": st.floats(0.0, 600.0),
                },
            )
        ),
    }
    detector = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "score_threshold": st.floats(0.9, 0.99),
                "persistence_s": st.floats(0.0, 300.0),
                "warmup_s": st.floats(600.0, 1500.0),
                "shape_enabled": st.booleans(),
            },
        )
    )
    surge = draw(st.fixed_dictionaries({}, optional={"enabled": st.booleans()}))
    return {"guards": guards, "daemon": daemon, "detector": detector, "surge": surge}


@st.composite
def api_faults(draw: st.DrawFn) -> list[dict[str, Any]]:
    if not draw(st.booleans()):
        return []
    rates = draw(st.lists(st.floats(0.0, 0.25), min_size=4, max_size=4))
    start_s = draw(st.floats(0.0, FAULT_BEFORE_S - 60.0))
    return [
        {
            "verbs": draw(
                st.lists(st.sampled_from(["GET", "POST", "PATCH", "DELETE"]), unique=True)
            ),
            "error_500": rates[0],
            "conflict_409": rates[1],
            "throttle_429": rates[2],
            "forbidden_403": rates[3],
            "retry_after_s": 0,  # the client would wait in real time
            "from_s": start_s,
            "until_s": draw(st.floats(start_s + 60.0, FAULT_BEFORE_S)),
        }
    ]


@st.composite
def examples(draw: st.DrawFn) -> Example:
    scenario = load_scenario(draw(st.sampled_from(FAULT_SCENARIOS)))
    faults = [ApiFault.model_validate(f) for f in draw(api_faults())]
    count = draw(st.integers(1, 3))
    order = draw(st.permutations(range(count)))
    return Example(
        scenario=scenario.model_copy(update={"api_faults": faults}),
        books=draw(playbooks(count, list(order))),
        overrides=draw(overrides()),
        approvals=draw(st.lists(st.booleans(), min_size=1, max_size=4)),
    )


def reviewed(*approvals: bool) -> Example:
    """A memory leak whose restart awaits approval, reviewed with ``approvals``: drawn
    examples rarely reach the review queue, these always do."""
    book = {
        "name": "pb-0",
        "description": "restart, once approved",
        "match": {"causes": ["memory_leak"], "min_confidence": 0.5},
        "action": {"kind": "restart"},
        "mode": "approval",
        "verify": {"within_s": 600.0, "signals": ["memory"]},
    }
    overrides = {"guards": {"mode": "auto"}, "daemon": {"interval_s": 30.0}}
    return Example(load_scenario("memory-leak"), [book], overrides, list(approvals))


def validated(example: Example, folder: Path) -> tuple[Settings, tuple[Playbook, ...]]:
    """The example's playbooks and settings through start-up's own validation."""
    books = folder / "playbooks"
    books.mkdir()
    for book in example.books:
        (books / f"{book['name']}.yaml").write_text(yaml.safe_dump(book, sort_keys=False))
    loaded = load_playbooks(books)
    return load_settings(None, playbooks_dir=str(books), **example.overrides), loaded


def settle_s(loaded: tuple[Playbook, ...], config: Settings) -> float:
    """How long an incident may take, from a finding, to end: the longest chain of
    verifications, a review before each step, and the quiet the loop waits for, with
    cycles to spare."""
    verify_s = sum(book.verify.within_s for book in loaded)
    reviews_s = (len(loaded) + 1) * REVIEW_EVERY_S
    spare_s = 4 * config.daemon.interval_s + config.daemon.verify_stable_s
    return verify_s + reviews_s + spare_s


def review(store: AuditStore, approvals: list[bool], turn: int, at: Any) -> int:
    """Approve or reject every action awaiting approval; returns the next turn."""
    for action in store.actions(status=ActionStatus.PENDING_APPROVAL):
        if approvals[turn % len(approvals)]:
            store.approve_action(action.id, by="reviewer", reason="looks right", at=at)
            event("an action approved")
        else:
            store.reject_action(action.id, by="reviewer", reason="not now", at=at)
            event("an action rejected")
        turn += 1
    return turn


def run(harness: SimHarness, store: AuditStore, approvals: list[bool], until_s: float) -> None:
    turn = 0
    while harness.cluster.elapsed_s < until_s:
        harness.run_for(min(REVIEW_EVERY_S, until_s - harness.cluster.elapsed_s))
        turn = review(store, approvals, turn, harness.cluster.clock.now())


@settings(settings.get_profile(PROFILE))
@given(example=examples())
@example(example=reviewed(True))
@example(example=reviewed(False))
def test_generated_playbooks_and_settings_never_stop_the_loop(example: Example) -> None:
    with tempfile.TemporaryDirectory(prefix="healer-props-") as tmp:
        folder = Path(tmp)
        config, loaded = validated(example, folder)
        store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
        harness = SimHarness.start(example.scenario, settings=config, store=store, workdir=folder)
        scenario_s = max(e.at_s for e in example.scenario.events) + AFTER_LAST_EVENT_S
        settle = settle_s(loaded, config)
        try:
            with capture_logs() as logs:
                run(harness, store, example.approvals, scenario_s + settle)
            healer = harness.healer
            crashes = [e for e in logs if e["event"] in ("cycle_crashed", "workload_step_crashed")]
            assert crashes == [], crashes
            assert healer.vitals.cycle_failures == 0 and healer.vitals.incident_errors == 0
            assert healer.vitals.cycles > 0

            settled_by = harness.cluster.clock.now() - timedelta(seconds=settle)
            incidents = store.list_incidents(limit=500)
            open_ = [
                (i.id, i.workload, i.status, i.cause)
                for i in incidents
                if i.opened <= settled_by
                and (i.status is not IncidentStatus.RESOLVED or i.outcome is None)
            ]
            assert open_ == [], f"incidents without an outcome: {open_}"
            intended = store.actions(status=ActionStatus.INTENDED)
            assert intended == [], f"actions left intended: {intended}"
            for incident in incidents:  # what the examples reached (--hypothesis-show-statistics)
                outcome = store.incident(incident.id).outcome
                why = outcome.evidence.split(":")[0][:40] if outcome else None
                event(f"{incident.outcome} ({why}), action {incident.action_status}")
        finally:
            harness.close()
            store.close()
