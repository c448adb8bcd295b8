"""What every action kind provides, and the values passed between its parts.

An action kind is one module of ``healer.actions`` exporting one ``ActionSpec``: its
typed parameters, how a playbook's choice becomes a concrete plan, which guards judge
it, the exact request ``kubectl`` would send, how to tell after a crash whether that
request reached the cluster, and the RBAC rules it needs. The planner, the guards and the
actuator find it through ``healer.actions.handler`` and never branch on the kind.

Decisions:

- This package sits below ``decide`` and ``act`` and imports neither: the planner (pure)
  and the actuator (I/O) both call into it. It never imports ``kubernetes``: what an
  action reads from the cluster comes through ``Reads`` as plain JSON, the shape
  ``kubectl get -o json`` prints, and what it sends is a ``Request`` value that the
  actuator puts on the wire unchanged.
- ``Plan.params`` stays the JSON mapping the audit store keeps (and a person reads on
  the review page); each kind parses it through its own pydantic model before using it,
  so a missing or mistyped parameter is a ``PermanentActionError`` naming the field, not
  a ``KeyError`` from deep inside the actuator.
- A kind lists the target kinds it supports (``targets``): playbook validation refuses
  a playbook that names a target kind its action does not support, and the request is
  refused again (``supports``) should such a workload reach it another way.
- Guards are named, not imported: the guard functions live in ``decide.guards``, and a
  kind lists the names of the kind-specific ones it needs (``GuardName``, checked by
  mypy). The guards every action passes (namespace, cooldown, rate limit, ...) are not
  listed: no kind may skip them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from healer.config import GuardSettings
from healer.errors import PermanentActionError
from healer.types import (
    ActionKind,
    Demand,
    Finding,
    HpaState,
    JsonObject,
    JsonValue,
    TargetKind,
    WorkloadRef,
    WorkloadState,
)

GuardName = Literal["paused", "rollback_target", "flip_back", "scale_bounds", "eviction_budget"]
"""The kind-specific guards of ``decide.guards``; the common ones always apply."""


class Params(BaseModel):
    """A kind's concrete parameters: what ``Plan.params`` holds, as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, JsonValue]:
        """The mapping for ``Plan.params``: unset optional fields are left out."""
        dumped: dict[str, JsonValue] = self.model_dump(mode="json", exclude_none=True)
        return dumped


class Settings(BaseModel):
    """A kind's settings in a playbook (``action.params``); untrusted input."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoSettings(Settings):
    """For kinds a playbook cannot tune."""


@dataclass(frozen=True)
class ScaleTarget:
    """A scale decision: ``current`` replicas now, ``target`` wanted, within bounds."""

    current: int
    """The Deployment's replicas now."""
    target: int
    """The replicas (or HPA minReplicas) to set, already clamped to the bounds."""
    floor: int
    ceiling: int
    """The lower of ``max_replicas`` and the HPA's maxReplicas."""
    hpa: HpaState | None = None


@dataclass(frozen=True)
class PlanInputs:
    """What a kind may read to make a plan concrete; all of it pure values."""

    finding: Finding
    state: WorkloadState
    guards: GuardSettings
    demand: Demand | None = None
    """The measured load, when the caller measured it."""
    pod: str | None = None
    """The pod the diagnosis blames (``Diagnosis.pod``), for kinds that act on one pod."""


P = TypeVar("P", bound=Params)
S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class Concrete:
    """A concrete plan's parameters, a clause for its reason, and what guards judge."""

    params: Params
    sizing: str = ""
    """Appended to the plan's reason: how the parameters were chosen (``; ...``)."""
    scale: ScaleTarget | None = None
    """The sizing the ``scale_bounds`` guard judges, for kinds that list it."""


@dataclass(frozen=True)
class Request:
    """One Kubernetes API request, exactly as it is sent (dry-run aside)."""

    verb: Literal["GET", "POST", "PATCH", "PUT", "DELETE"]
    path: str
    content_type: str
    body: JsonValue

    def to_json(self) -> JsonObject:
        """The form ``ActionRecord.request`` keeps."""
        return {
            "verb": self.verb,
            "path": self.path,
            "content_type": self.content_type,
            "body": self.body,
        }


class Reads(Protocol):
    """What an action may read from the cluster, as JSON; errors are ``ActionError``."""

    def deployment(self, target: WorkloadRef) -> JsonObject:
        """The Deployment object."""
        ...

    def workload(self, target: WorkloadRef) -> JsonObject:
        """The target object, whatever its kind (Deployment, StatefulSet)."""
        ...

    def revisions(self, target: WorkloadRef) -> list[JsonObject]:
        """The ControllerRevisions the target controls (a StatefulSet's history)."""
        ...

    def replicasets(self, target: WorkloadRef) -> list[JsonObject]:
        """The ReplicaSets the Deployment controls (label selector and owner reference)."""
        ...

    def pod(self, namespace: str, name: str) -> JsonObject | None:
        """The pod, or None when it is gone."""
        ...

    def pods_of(self, target: WorkloadRef) -> list[JsonObject]:
        """The pods the target's selector matches."""
        ...

    def hpa(self, namespace: str, name: str) -> JsonObject:
        """A HorizontalPodAutoscaler."""
        ...

    def node(self, name: str) -> JsonObject | None:
        """The Node, or None when it is gone."""
        ...


@dataclass(frozen=True)
class Rule:
    """One RBAC rule an action needs: ``verbs`` on ``resource`` of API group ``group``."""

    group: str
    resource: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ActionSpec(Generic[P, S]):
    """One action kind, complete. Built once per module; see the module docstring."""

    kind: ActionKind
    params: type[P]
    settings: type[S]
    guards: tuple[GuardName, ...]
    """Kind-specific guards, in the order they are recorded."""
    rbac: tuple[Rule, ...]
    targets: tuple[TargetKind, ...]
    """The target kinds this action can act on."""
    make_concrete: Callable[[PlanInputs, S], Concrete]
    make_request: Callable[[WorkloadRef, P, Reads, datetime], Request]
    """The request for ``params`` on the target at ``now``. May read the cluster (and so
    raise ``ActionError``); called again after a 409, so it must build from fresh reads."""
    check_landed: Callable[[WorkloadRef, P, datetime, Reads], bool]
    """Whether an action intended at ``started`` reached the cluster, judged from the
    objects themselves. Raises ``ActionError`` when the cluster cannot be read."""
    params_of_request: Callable[[JsonObject], dict[str, JsonValue]] | None = None
    """The params read back from a sent request (``Request.to_json()``), for a record
    that kept the request rather than the intent's ``{"action", "params"}``."""
    make_follow_up: Callable[[WorkloadRef, P, Reads, datetime], tuple[Request, ...]] | None = None
    """Requests to send once the request has been answered, built from fresh reads: what
    a person is told to do next for the action to take effect (delete a StatefulSet's
    pod stuck at the revision rolled back from)."""
    retry_throttled: bool = True
    """Whether the actuator waits out a 429 and asks again at once. False where a 429 is
    a PodDisruptionBudget's answer that lasts minutes (a drain's evictions): the
    request is asked again next cycle instead of holding the cycle up."""

    def concrete(self, inputs: PlanInputs, settings: Settings) -> Concrete:
        if not isinstance(settings, self.settings):
            raise TypeError(f"{self.kind} takes {self.settings.__name__}, not {settings!r}")
        return self.make_concrete(inputs, settings)

    def parse(self, params: Mapping[str, JsonValue]) -> P:
        """``Plan.params`` (or an intent's) as this kind's model; PermanentActionError
        naming the field when they do not fit."""
        try:
            return self.params.model_validate(dict(params))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "params"
            raise PermanentActionError(
                f"{self.kind} params {dict(params)}: {field}: {first['msg']}"
            ) from exc

    def supports(self, kind: str) -> bool:
        """Whether this action can act on a target of ``kind`` (a ``TargetKind`` value)."""
        return kind in {t.value for t in self.targets}

    def request(
        self, target: WorkloadRef, params: Mapping[str, JsonValue], reads: Reads, now: datetime
    ) -> Request:
        if not self.supports(target.kind):
            known = ", ".join(t.value for t in self.targets)
            raise PermanentActionError(
                f"{target}: {self.kind} does not support a {target.kind} (only {known})"
            )
        return self.make_request(target, self.parse(params), reads, now)

    def follow_up(
        self, target: WorkloadRef, params: Mapping[str, JsonValue], reads: Reads, now: datetime
    ) -> tuple[Request, ...]:
        if self.make_follow_up is None:
            return ()
        return self.make_follow_up(target, self.parse(params), reads, now)

    def landed(
        self, target: WorkloadRef, recorded: JsonObject, started: datetime, reads: Reads
    ) -> bool:
        """``recorded`` is an ``ActionRecord.request``: an intent or a sent request."""
        params = recorded.get("params")
        if isinstance(params, dict):
            return self.check_landed(target, self.parse(params), started, reads)
        found = self.params_of_request(recorded) if self.params_of_request else {}
        return self.check_landed(target, self.parse(found), started, reads)


class Action(Protocol):
    """An ``ActionSpec`` with its types erased: what the registry hands out."""

    @property
    def kind(self) -> ActionKind: ...

    @property
    def settings(self) -> type[Settings]: ...

    @property
    def guards(self) -> tuple[GuardName, ...]: ...

    @property
    def rbac(self) -> tuple[Rule, ...]: ...

    @property
    def targets(self) -> tuple[TargetKind, ...]: ...

    @property
    def retry_throttled(self) -> bool: ...

    def supports(self, kind: str) -> bool: ...

    def concrete(self, inputs: PlanInputs, settings: Settings) -> Concrete: ...

    def parse(self, params: Mapping[str, JsonValue]) -> Params: ...

    def request(
        self, target: WorkloadRef, params: Mapping[str, JsonValue], reads: Reads, now: datetime
    ) -> Request: ...

    def follow_up(
        self, target: WorkloadRef, params: Mapping[str, JsonValue], reads: Reads, now: datetime
    ) -> tuple[Request, ...]: ...

    def landed(
        self, target: WorkloadRef, recorded: JsonObject, started: datetime, reads: Reads
    ) -> bool: ...


def path_of(obj: JsonObject, *keys: str) -> JsonValue:
    """``obj[k1][k2]...``, None where a level is missing or not a mapping."""
    value: JsonValue = obj
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
