"""The node watch: nodes that fail their pods are cordoned, drained and later uncordoned.

Each cycle the daemon hands it the nodes as the metrics say (``NodeState``); it
diagnoses each (``diagnose.nodes``), and for a node bad for ``nodes.grace_s`` opens an
incident, cordons the node within the cap (``decide.nodes``) or escalates it, drains it
one Eviction per pod when the drain is due, records the outcome once the node hurts no
workload any more, and uncordons it after ``nodes.uncordon_after_s`` of health.

Decisions:

- A node is a target like a workload: its incident, plans and action records name
  ``node_ref(name)`` (kind ``Node``, no namespace) in the audit store, so the review
  page, the API and the escalations show it without a type of their own; the
  diagnosis names the workloads it hurt. What differs is the stages, which are few and
  kept here (``Case``) rather than in the workload lifecycle: a node is not verified by
  the detector's signals but by its own conditions and its pods.
- The incident stays open (verifying) from the cordon to the uncordon, and its outcome
  is recorded then: healed, with when its workloads first served on other nodes again
  (a line of its story at that time). A node that never recovers keeps its incident
  open and stays cordoned: replacing it is a person's call, the review page shows it.
- An escalated node (over the cap, a cordon that failed, a drain a budget blocks) is a
  person's from then on: healer neither drains nor uncordons it, and forgets it once
  it is healthy; if it turns bad again, a new incident opens.
- A blocked drain (a PodDisruptionBudget answering 429) is asked again every cycle
  until ``nodes.drain_within_s``, then escalated with the pods that would not go;
  each blocked pod is recorded once, not once per cycle. Nothing is deleted directly.
- Modes: dry-run records what would be sent and goes no further than the cordon;
  approval mode escalates the node with the plan, since a node's actions come one
  after another and cannot wait on a person each.
- What it remembers (when each node turned bad and healthy, its cases) is saved in the
  store after every change (``save_state``), so a restarted daemon neither opens a
  second incident nor forgets to uncordon a node it cordoned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

import structlog

from healer.audit.roles import DaemonStore
from healer.config import Settings
from healer.decide import nodes as policy
from healer.decide.paging import Escalation, Resolution
from healer.diagnose.nodes import diagnose, failing, workload_of
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Diagnosis,
    Finding,
    GuardResult,
    JsonObject,
    JsonValue,
    Mode,
    NodePod,
    NodeState,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
    node_ref,
)

log = structlog.get_logger("healer.nodes")

STATE_KEY = "node_watch"
"""The key of the watch's memory in the store's kept state."""
PLAYBOOK = "node-heal"
"""The name plans carry: node healing is configured by ``nodes.*``, not by a playbook."""
MODEL = "node-conditions"
"""The ``model_version`` of a node's finding: its conditions, not a learned model."""


@runtime_checkable
class NodeSource(Protocol):
    """Where the nodes' conditions and pods are read (a metrics source)."""

    def nodes(self, *, until: datetime) -> tuple[NodeState, ...]: ...


@runtime_checkable
class NodeCluster(Protocol):
    """The actuator, as the node watch uses it."""

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]: ...


@dataclass(frozen=True)
class Case:
    """One node's open business: its incident and how far healer got with it."""

    incident_id: int
    opened: datetime
    cordoned_at: datetime | None = None
    """When healer cordoned it; None when it did not (escalated, dry run)."""
    drain_started: datetime | None = None
    drained: bool = False
    served_at: datetime | None = None
    """When the workloads it hurt first served on other nodes again."""
    settled: bool = False
    """Escalated: the node is a person's now, healer leaves it as it is."""
    blocked: tuple[str, ...] = ()
    """Pods whose eviction was refused, already recorded once."""


@dataclass
class NodeWatch:
    """What the node watch remembers across cycles; collaborators are passed in."""

    bad_since: dict[str, datetime] = field(default_factory=dict)
    healthy_since: dict[str, datetime] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)
    saved: JsonObject | None = None
    """What was last written to the store."""
    blamed: dict[WorkloadRef, Diagnosis] = field(default_factory=dict)
    """Workloads whose pods fail on a bad node, with the node's diagnosis; as of the
    last step, for the workload lifecycle (``blame``)."""

    def blame(self, workload: WorkloadRef) -> Diagnosis | None:
        """The diagnosis of the bad node the workload's pods fail on, if any (within
        its grace, or handled by an incident of its own)."""
        return self.blamed.get(workload)

    # ---- memory ----------------------------------------------------------------------

    def to_json(self) -> JsonObject:
        return {
            "bad_since": {k: v.isoformat() for k, v in self.bad_since.items()},
            "healthy_since": {k: v.isoformat() for k, v in self.healthy_since.items()},
            "cases": {k: _case_json(c) for k, c in self.cases.items()},
        }

    @classmethod
    def load(cls, store: DaemonStore) -> NodeWatch:
        """The watch as the store kept it; a fresh one when nothing was kept."""
        kept = store.load_state(STATE_KEY) or {}
        return cls(
            saved=kept or None,
            bad_since=_times(kept.get("bad_since")),
            healthy_since=_times(kept.get("healthy_since")),
            cases={k: _case(v) for k, v in _mapping(kept.get("cases")).items()},
        )

    @property
    def held(self) -> frozenset[str]:
        """The nodes healer holds cordoned."""
        return frozenset(n for n, c in self.cases.items() if c.cordoned_at is not None)

    # ---- the cycle -------------------------------------------------------------------

    def step(
        self,
        nodes: Sequence[NodeState],
        now: datetime,
        *,
        deps: NodeDeps,
        anomalous: Set[WorkloadRef] = frozenset(),
    ) -> None:
        """Move every node on by one cycle; each step is in the store before the next.
        ``anomalous`` are the workloads the detector finds anomalous in this cycle."""
        diagnoses = {n.name: diagnose(n, nodes, anomalous) for n in nodes}
        self._remember(nodes, diagnoses, now)
        self.blamed = _blamed(nodes, diagnoses, anomalous)
        for node in policy.by_onset(nodes, self.bad_since, now):
            case = self.cases.get(node.name)
            if case is None:
                self._maybe_open(node, nodes, diagnoses[node.name], now, deps)
            else:
                self._advance(node, nodes, case, diagnoses[node.name], now, deps)
        for gone in sorted(self.cases.keys() - {n.name for n in nodes}):
            self._gone(gone, self.cases.pop(gone), now, deps)
        kept = self.to_json()
        if kept != self.saved:  # one write when something changed, not one a cycle
            deps.store.save_state(STATE_KEY, kept, at=now)
            self.saved = kept

    def _remember(
        self, nodes: Sequence[NodeState], diagnoses: dict[str, Diagnosis | None], now: datetime
    ) -> None:
        for node in nodes:
            if diagnoses[node.name] is not None:
                self.bad_since.setdefault(node.name, now)
            else:
                self.bad_since.pop(node.name, None)
            if node.healthy:
                self.healthy_since.setdefault(node.name, now)
            else:
                self.healthy_since.pop(node.name, None)
        names = {n.name for n in nodes}
        self.bad_since = {k: v for k, v in self.bad_since.items() if k in names}
        self.healthy_since = {k: v for k, v in self.healthy_since.items() if k in names}

    def _maybe_open(
        self,
        node: NodeState,
        nodes: Sequence[NodeState],
        diagnosis: Diagnosis | None,
        now: datetime,
        deps: NodeDeps,
    ) -> None:
        began = self.bad_since.get(node.name)
        if diagnosis is None or began is None:
            return
        if (now - began).total_seconds() < deps.settings.nodes.grace_s:
            return
        finding = Finding(node.ref, now, 1.0, (), began, MODEL)
        incident_id = deps.store.open_incident(finding)
        deps.store.record_diagnosis(incident_id, diagnosis, at=now)
        deps.say("diagnosis", incident_id, node.name, now, diagnosis.explanation)
        case = Case(incident_id, now)
        guard = policy.cap(node, nodes, held=self.held, settings=deps.settings.nodes)
        plan = _plan(node.name, ActionKind.CORDON, {}, deps, guard, diagnosis.explanation)
        deps.store.record_plan(incident_id, plan, at=now)
        self.cases[node.name] = case
        if not guard.passed:
            self._escalate(node.name, case, now, deps, f"not cordoned: {guard.detail}")
            return
        if plan.mode is Mode.APPROVAL:
            why = "approval mode: healer cordons and drains nodes only in auto mode"
            self._escalate(node.name, case, now, deps, why)
            return
        record = deps.cluster.apply(plan, now=now)
        deps.store.record_action(incident_id, record)
        deps.say("action", incident_id, node.name, now, _told(record))
        if record.status is ActionStatus.SUCCEEDED:
            self.cases[node.name] = replace(case, cordoned_at=now)
        elif record.status is ActionStatus.FAILED:
            self._escalate(node.name, case, now, deps, f"the cordon failed: {record.error}")

    def _advance(
        self,
        node: NodeState,
        nodes: Sequence[NodeState],
        case: Case,
        diagnosis: Diagnosis | None,
        now: datetime,
        deps: NodeDeps,
    ) -> None:
        settings = deps.settings.nodes
        if case.settled or case.cordoned_at is None:
            if node.healthy:  # escalated (a person's now) or a dry run: forget it
                if not case.settled:
                    why = f"node {node.name} is healthy again (dry run: nothing was sent)"
                    deps.store.record_outcome(
                        case.incident_id, Outcome(OutcomeKind.HEALED, why, now)
                    )
                del self.cases[node.name]
            return
        if not case.drained:
            due = diagnosis is not None and policy.drain_due(
                node, cordoned_at=case.cordoned_at, now=now, settings=settings
            )
            if due or case.drain_started is not None:
                case = self._drain(node, case, now, deps)
                if case.settled:
                    return
        if case.served_at is None and diagnosis is None and _elsewhere_ready(node, nodes):
            case = replace(case, served_at=now)
            deps.say("verify", case.incident_id, node.name, now, _served(node.name, case))
        healthy_since = self.healthy_since.get(node.name)
        if policy.uncordon_due(node, healthy_since=healthy_since, now=now, settings=settings):
            self._uncordon(node, case, now, deps)
            return
        self.cases[node.name] = case

    def _drain(self, node: NodeState, case: Case, now: datetime, deps: NodeDeps) -> Case:
        started = case.drain_started or now
        case = replace(case, drain_started=started)
        left = policy.evictable(deps.cluster.pods_on_node(node.name))
        if not left:
            deps.say("action", case.incident_id, node.name, now, "drained: no pod left")
            return replace(case, drained=True)
        blocked = list(case.blocked)
        for pod in left:
            params: dict[str, JsonValue] = {"namespace": pod.namespace, "pod": pod.name}
            plan = _plan(node.name, ActionKind.DRAIN, params, deps, None, "drain")
            record = deps.cluster.apply(plan, now=now)
            key = f"{pod.namespace}/{pod.name}"
            if record.status is ActionStatus.FAILED:
                if key in blocked:
                    continue  # recorded once already: the drain waits, the log stays short
                blocked.append(key)
            deps.store.record_action(case.incident_id, record)
            deps.say("action", case.incident_id, node.name, now, _told(record))
        case = replace(case, blocked=tuple(blocked))
        if policy.drain_overdue(started=started, now=now, settings=deps.settings.nodes):
            still = ", ".join(f"{p.namespace}/{p.name}" for p in left)
            why = (
                f"the drain of {node.name} did not finish within "
                f"{deps.settings.nodes.drain_within_s:.0f}s; pods that would not go: {still} "
                "(a PodDisruptionBudget refuses their eviction; healer never deletes them)"
            )
            return self._escalate(node.name, case, now, deps, why)
        return case

    def _gone(self, name: str, case: Case, now: datetime, deps: NodeDeps) -> None:
        """The node left the cluster (replaced, scaled in): nothing is left to undo, and
        its open incident ends, healed if its workloads served elsewhere by then."""
        if case.settled:
            return
        kind = OutcomeKind.HEALED if case.served_at is not None else OutcomeKind.ESCALATED
        why = f"node {name} left the cluster" + (
            f"; {_served(name, case)}" if case.served_at is not None else ""
        )
        deps.store.record_outcome(case.incident_id, Outcome(kind, why, now))
        deps.say("outcome", case.incident_id, name, now, f"{kind}: {why}")
        if kind is OutcomeKind.ESCALATED:
            deps.escalate(Escalation(case.incident_id, node_ref(name), now, why, playbook=PLAYBOOK))

    def _settle(self, name: str, case: Case, now: datetime, deps: NodeDeps) -> None:
        evidence = f"{_served(name, case)}; node {name} healthy again and uncordoned"
        outcome = Outcome(OutcomeKind.HEALED, evidence, now)
        deps.store.record_outcome(case.incident_id, outcome)
        deps.say("outcome", case.incident_id, name, now, f"healed: {evidence}")
        deps.resolve(Resolution(case.incident_id, node_ref(name), now, evidence, PLAYBOOK))

    def _escalate(self, name: str, case: Case, now: datetime, deps: NodeDeps, why: str) -> Case:
        settled = replace(case, settled=True)
        self.cases[name] = settled
        if case.settled:
            return settled
        deps.store.record_outcome(case.incident_id, Outcome(OutcomeKind.ESCALATED, why, now))
        deps.say("outcome", case.incident_id, name, now, f"escalated: {why}")
        deps.escalate(Escalation(case.incident_id, node_ref(name), now, why, playbook=PLAYBOOK))
        return settled

    def _uncordon(self, node: NodeState, case: Case, now: datetime, deps: NodeDeps) -> None:
        plan = _plan(node.name, ActionKind.UNCORDON, {}, deps, None, "healthy again")
        record = deps.cluster.apply(plan, now=now)
        deps.store.record_action(case.incident_id, record)
        deps.say("action", case.incident_id, node.name, now, _told(record))
        if record.status is not ActionStatus.SUCCEEDED:
            self.cases[node.name] = case  # asked again next cycle
            return
        self._settle(node.name, case, now, deps)
        del self.cases[node.name]


@dataclass(frozen=True)
class NodeDeps:
    """The watch's collaborators for one cycle."""

    store: DaemonStore
    cluster: NodeCluster
    settings: Settings
    say: Callable[[str, int, str, datetime, str], None]
    """A line of the incident's story: kind, incident, node, time, text."""
    escalate: Callable[[Escalation], None]
    resolve: Callable[[Resolution], None]


def _plan(
    name: str,
    action: ActionKind,
    params: dict[str, JsonValue],
    deps: NodeDeps,
    guard: GuardResult | None,
    reason: str,
) -> Plan:
    return Plan(
        workload=node_ref(name),
        playbook=PLAYBOOK,
        action=action,
        params=params,
        mode=deps.settings.guards.mode,
        guard_results=(guard,) if guard is not None else (),
        reason=reason,
        verify_within_s=deps.settings.nodes.drain_within_s,
    )


def _blamed(
    nodes: Sequence[NodeState],
    diagnoses: dict[str, Diagnosis | None],
    anomalous: Set[WorkloadRef],
) -> dict[WorkloadRef, Diagnosis]:
    """Each workload failing on a diagnosed node, with the node's diagnosis."""
    blamed: dict[WorkloadRef, Diagnosis] = {}
    for node in nodes:
        found = diagnoses.get(node.name)
        if found is None:
            continue
        for pod in failing(node, anomalous):
            workload = workload_of(pod)
            if workload is not None:
                blamed.setdefault(workload, found)
    return blamed


def _served(name: str, case: Case) -> str:
    how = "drained" if case.drained else "cordoned"
    when = case.served_at.isoformat() if case.served_at is not None else "?"
    return f"node {name} {how}; its workloads serve on other nodes since {when}"


def _elsewhere_ready(node: NodeState, nodes: Sequence[NodeState]) -> bool:
    """No pod of the node is failing, and every pod on another node is Ready, of the
    workloads that run (or ran) on it."""
    mine = {p.workload for p in node.pods if not p.daemon}
    others = [p for n in nodes if n.name != node.name for p in n.pods if p.workload in mine]
    failing_here = [p for p in node.pods if not p.daemon and not p.ready and not p.terminating]
    return not failing_here and all(p.ready for p in others if not p.terminating)


def _told(record: ActionRecord) -> str:
    said = f"{record.kind} {record.status}"
    body = record.request.get("body")
    if record.kind is ActionKind.DRAIN and isinstance(body, dict):
        meta = body.get("metadata")
        if isinstance(meta, dict):
            said += f" {meta.get('namespace')}/{meta.get('name')}"
    return said + (f": {record.error}" if record.error else "")


def _case_json(case: Case) -> JsonObject:
    def iso(value: datetime | None) -> JsonValue:
        return value.isoformat() if value is not None else None

    return {
        "incident_id": case.incident_id,
        "opened": case.opened.isoformat(),
        "cordoned_at": iso(case.cordoned_at),
        "drain_started": iso(case.drain_started),
        "drained": case.drained,
        "served_at": iso(case.served_at),
        "settled": case.settled,
        "blocked": list(case.blocked),
    }


def _mapping(value: JsonValue) -> dict[str, JsonValue]:
    return value if isinstance(value, dict) else {}


def _times(value: JsonValue) -> dict[str, datetime]:
    return {k: datetime.fromisoformat(str(v)) for k, v in _mapping(value).items()}


def _case(value: JsonValue) -> Case:
    data = _mapping(value)

    def when(key: str) -> datetime | None:
        raw = data.get(key)
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None

    opened = when("opened")
    blocked = data.get("blocked")
    return Case(
        incident_id=int(str(data.get("incident_id"))),
        opened=opened
        if opened is not None
        else datetime.fromisoformat("1970-01-01T00:00:00+00:00"),
        cordoned_at=when("cordoned_at"),
        drain_started=when("drain_started"),
        drained=data.get("drained") is True,
        served_at=when("served_at"),
        settled=data.get("settled") is True,
        blocked=tuple(str(b) for b in blocked) if isinstance(blocked, list) else (),
    )
