"""Policies as Kubernetes objects: what ``HealingPolicy`` and ``ClusterHealingPolicy`` say
about the workloads they match, and how several combine with the settings.

A policy selects workloads (its namespace, or the ``namespaces`` of a cluster policy;
a label selector; kinds) and may set a mode, the actions allowed, limits (cooldown, an
action budget, scale bounds), maintenance windows (during which only dry-run) and the
receivers of escalations. ``parse`` turns an object the API server accepted into a
``Policy``, or a ``Rejected`` with the reason when it contradicts itself (a floor above
its ceiling, an unknown time zone): the schema cannot see those, the status says them.

Decisions:

- The most cautious wins, field by field, across every matching policy and the
  settings (``govern``, then ``governed``): the most cautious mode (dry-run over
  approval over auto; an open maintenance window is dry-run), the intersection of the
  allowed actions, the longest cooldown, the smallest action budget over the longest
  window, the highest replica floor and the lowest ceiling. A policy can only add
  caution to the settings, as the ``healer.io/mode`` annotation can; the annotation and
  the playbook's mode are applied afterwards by ``resolve_mode``, most cautious again.
- Each field remembers the policy that decided it, so a guard verdict can say "approval
  required by HealingPolicy shop/cautious".
- Pure: time comes in as ``now``; the objects come from the policy watch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healer.config import GuardSettings
from healer.types import ActionKind, GuardResult, JsonObject, Mode, WorkloadRef

_CAUTION = {Mode.AUTO: 0, Mode.APPROVAL: 1, Mode.DRY_RUN: 2}
_T = TypeVar("_T")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ---- the objects' shape (the CRD's schema, checked again at the boundary) ---------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class _Expression(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class _Selector(_Model):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[_Expression, ...] = Field(default=(), alias="matchExpressions")


class _Limits(_Model):
    cooldown_s: int | None = Field(default=None, ge=0, alias="cooldownSeconds")
    max_actions: int | None = Field(default=None, ge=0, alias="maxActionsPerWindow")
    window_s: int | None = Field(default=None, gt=0, alias="windowSeconds")
    min_replicas: int | None = Field(default=None, ge=0, alias="minReplicas")
    max_replicas: int | None = Field(default=None, ge=1, alias="maxReplicas")


class _Window(_Model):
    time_zone: str = Field(default="UTC", alias="timeZone")
    days: tuple[Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], ...] = ()
    start: str | None = None
    end: str | None = None
    since: datetime | None = Field(default=None, alias="from")
    until: datetime | None = None


class _Notify(_Model):
    receivers: tuple[str, ...] = ()


class _Spec(_Model):
    namespaces: tuple[str, ...] = ()
    selector: _Selector = _Selector()
    kinds: tuple[str, ...] = ()
    mode: Literal["auto", "approval", "dry-run"] | None = None
    allowed_actions: tuple[str, ...] | None = Field(default=None, alias="allowedActions")
    limits: _Limits = _Limits()
    windows: tuple[_Window, ...] = Field(default=(), alias="maintenanceWindows")
    notify: _Notify = _Notify()


# ---- what healer keeps --------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A maintenance window: daily times on some days in a time zone, or one span."""

    zone: ZoneInfo
    days: frozenset[int]
    """Weekdays (0 Monday) the window opens on; every day when empty."""
    start: time | None = None
    end: time | None = None
    since: datetime | None = None
    until: datetime | None = None

    def open_at(self, now: datetime) -> bool:
        if self.since is not None and self.until is not None:
            return self.since <= now < self.until
        assert self.start is not None and self.end is not None
        local = now.astimezone(self.zone)
        today = local.replace(tzinfo=None).time()
        if self.start < self.end:
            return self._day(local.weekday()) and self.start <= today < self.end
        # Past midnight: the evening belongs to today's window, the morning to yesterday's.
        if today >= self.start:
            return self._day(local.weekday())
        return today < self.end and self._day((local - timedelta(days=1)).weekday())

    def _day(self, weekday: int) -> bool:
        return not self.days or weekday in self.days

    def describe(self) -> str:
        if self.since is not None and self.until is not None:
            return f"{self.since.isoformat()} to {self.until.isoformat()}"
        days = ", ".join(_DAYS[d] for d in sorted(self.days)) or "daily"
        assert self.start is not None and self.end is not None
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


@dataclass(frozen=True)
class Policy:
    """One valid policy, as the guards apply it."""

    ref: str
    """``HealingPolicy shop/cautious`` or ``ClusterHealingPolicy strict``: how verdicts name it."""
    namespaces: tuple[str, ...]
    """Where it applies: its own namespace, or a cluster policy's list (empty: all)."""
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    kinds: frozenset[str] = frozenset()
    mode: Mode | None = None
    allowed: frozenset[ActionKind] | None = None
    cooldown_s: float | None = None
    max_actions: int | None = None
    window_s: float | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    windows: tuple[Window, ...] = ()
    receivers: tuple[str, ...] = ()

    def matches(self, workload: WorkloadRef, labels: Mapping[str, str]) -> bool:
        if self.namespaces and workload.namespace not in self.namespaces:
            return False
        if self.kinds and workload.kind not in self.kinds:
            return False
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_holds(key, op, values, labels) for key, op, values in self.match_expressions)


@dataclass(frozen=True)
class Rejected:
    """A policy the schema accepted that contradicts itself: ignored, its status says why."""

    ref: str
    reason: str
    """CamelCase, for the condition's ``reason``."""
    message: str


def _holds(key: str, op: str, values: tuple[str, ...], labels: Mapping[str, str]) -> bool:
    match op:
        case "In":
            return labels.get(key) in values
        case "NotIn":
            return labels.get(key) not in values
        case "Exists":
            return key in labels
        case _:
            return key not in labels


def ref_of(obj: JsonObject) -> str:
    """``HealingPolicy shop/cautious`` for a namespaced object, ``Kind name`` otherwise."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    namespace, name = meta.get("namespace"), meta.get("name")
    return f"{obj.get('kind')} {namespace}/{name}" if namespace else f"{obj.get('kind')} {name}"


def parse(obj: JsonObject) -> Policy | Rejected:
    """The policy ``obj`` says, or why it cannot apply."""
    ref = ref_of(obj)
    try:
        spec = _Spec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        return Rejected(ref, "InvalidSpec", f"spec.{where}: {exc.errors()[0]['msg']}")
    limits = spec.limits
    if (
        limits.min_replicas is not None
        and limits.max_replicas is not None
        and limits.min_replicas > limits.max_replicas
    ):
        message = (
            f"spec.limits.minReplicas ({limits.min_replicas}) is above "
            f"spec.limits.maxReplicas ({limits.max_replicas})"
        )
        return Rejected(ref, "MinReplicasAboveMax", message)
    windows = []
    for i, given in enumerate(spec.windows):
        window = _window(given, f"spec.maintenanceWindows[{i}]")
        if isinstance(window, str):
            return Rejected(ref, "InvalidMaintenanceWindow", window)
        windows.append(window)
    meta = obj.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return Policy(
        ref=ref,
        namespaces=(str(namespace),) if namespace else spec.namespaces,
        match_labels=dict(spec.selector.match_labels),
        match_expressions=tuple(
            (e.key, e.operator, e.values) for e in spec.selector.match_expressions
        ),
        kinds=frozenset(spec.kinds),
        mode=None if spec.mode is None else Mode(spec.mode.replace("-", "_")),
        allowed=None
        if spec.allowed_actions is None
        else frozenset(ActionKind(a) for a in spec.allowed_actions),
        cooldown_s=limits.cooldown_s,
        max_actions=limits.max_actions,
        window_s=limits.window_s,
        min_replicas=limits.min_replicas,
        max_replicas=limits.max_replicas,
        windows=tuple(windows),
        receivers=spec.notify.receivers,
    )


def _window(given: _Window, where: str) -> Window | str:
    """The window, or what is wrong with it (naming the field)."""
    try:
        zone = ZoneInfo(given.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{where}.timeZone: {given.time_zone!r} is not an IANA time zone"
    days = frozenset(_DAYS.index(d) for d in given.days)
    daily, span = given.start or given.end, given.since or given.until
    if daily and span:
        return f"{where}: either start and end, or from and until, not both"
    if span:
        if given.since is None or given.until is None or given.since.tzinfo is None:
            return f"{where}: from and until both, with a time zone offset"
        if given.since >= given.until:
            return f"{where}: from must be before until"
        return Window(zone, days, since=given.since, until=given.until)
    if given.start is None or given.end is None:
        return f"{where}: start and end (HH:MM), or from and until"
    start, end = time.fromisoformat(given.start), time.fromisoformat(given.end)
    if start == end:
        return f"{where}: start and end are the same time"
    return Window(zone, days, start=start, end=end)


# ---- combining ----------------------------------------------------------------------


@dataclass(frozen=True)
class Decided(Generic[_T]):
    """A value and the policy that decided it."""

    value: _T
    by: str


@dataclass(frozen=True)
class Governance:
    """What the matching policies say about one workload now, each field with the
    policy that decided it; None where none of them says anything."""

    policies: tuple[str, ...] = ()
    mode: Decided[Mode] | None = None
    maintenance: Decided[str] | None = None
    """The open maintenance window, described."""
    allowed: Decided[frozenset[ActionKind]] | None = None
    cooldown_s: Decided[float] | None = None
    max_actions: Decided[int] | None = None
    window_s: Decided[float] | None = None
    min_replicas: Decided[int] | None = None
    max_replicas: Decided[int] | None = None
    receivers: tuple[str, ...] = ()


def govern(
    policies: Iterable[Policy], workload: WorkloadRef, labels: Mapping[str, str], now: datetime
) -> Governance:
    """The most cautious of what every policy matching ``workload`` says, at ``now``."""
    matching = [p for p in policies if p.matches(workload, labels)]
    maintenance = next(
        (Decided(w.describe(), p.ref) for p in matching for w in p.windows if w.open_at(now)),
        None,
    )
    modes = [Decided(p.mode, p.ref) for p in matching if p.mode is not None]
    if maintenance is not None:
        modes.append(Decided(Mode.DRY_RUN, maintenance.by))
    return Governance(
        policies=tuple(p.ref for p in matching),
        mode=max(modes, key=lambda d: _CAUTION[d.value], default=None),
        maintenance=maintenance,
        allowed=_allowed(matching),
        cooldown_s=_pick(matching, "cooldown_s", highest=True),
        max_actions=_pick(matching, "max_actions", highest=False),
        window_s=_pick(matching, "window_s", highest=True),
        min_replicas=_pick(matching, "min_replicas", highest=True),
        max_replicas=_pick(matching, "max_replicas", highest=False),
        receivers=tuple(dict.fromkeys(r for p in matching for r in p.receivers)),
    )


def _pick(policies: Sequence[Policy], name: str, *, highest: bool) -> Decided[Any] | None:
    """The most cautious value of the limit ``name`` (the highest or the lowest)."""
    found = [(getattr(p, name), p.ref) for p in policies if getattr(p, name) is not None]
    if not found:
        return None
    pick = max if highest else min
    value, by = pick(found, key=lambda pair: pair[0])
    return Decided(value, by)


def _allowed(policies: Sequence[Policy]) -> Decided[frozenset[ActionKind]] | None:
    limited = [p for p in policies if p.allowed is not None]
    if not limited:
        return None
    allowed = frozenset(ActionKind)
    for p in limited:
        assert p.allowed is not None
        allowed &= p.allowed
    narrowest = min(limited, key=lambda p: len(p.allowed or ()))
    return Decided(allowed, narrowest.ref)


def governed(guards: GuardSettings, governance: Governance | None) -> GuardSettings:
    """``guards`` with the policies' limits applied where they are more cautious. The
    mode is not among them: ``resolve_mode`` takes the policies' beside the others."""
    if governance is None or not governance.policies:
        return guards
    g = governance
    update: dict[str, object] = {}
    if g.cooldown_s is not None and g.cooldown_s.value > guards.cooldown_s:
        update["cooldown_s"] = g.cooldown_s.value
    if g.max_actions is not None and g.max_actions.value < guards.max_actions_per_window:
        update["max_actions_per_window"] = g.max_actions.value
    if g.window_s is not None and g.window_s.value > guards.rate_limit_window_s:
        update["rate_limit_window_s"] = g.window_s.value
    if g.min_replicas is not None and g.min_replicas.value > guards.min_replicas:
        update["min_replicas"] = g.min_replicas.value
    if g.max_replicas is not None and g.max_replicas.value < guards.max_replicas:
        update["max_replicas"] = g.max_replicas.value
    return guards.model_copy(update=update) if update else guards


def verdict(governance: Governance, action: ActionKind, settings_mode: Mode) -> GuardResult:
    """The ``policy`` guard: blocks an action the policies do not allow; otherwise
    passes, saying which policy decided the mode and the limits."""
    g = governance
    if not g.policies:
        return GuardResult("policy", True, "no policy matches the workload")
    if g.allowed is not None and action not in g.allowed.value:
        allowed = ", ".join(sorted(g.allowed.value)) or "nothing"
        detail = f"{action} not allowed by {g.allowed.by} (allowed: {allowed})"
        return GuardResult("policy", False, detail)
    said = []
    if g.maintenance is not None and g.mode is not None and g.mode.by == g.maintenance.by:
        said.append(f"dry-run: maintenance window of {g.maintenance.by} ({g.maintenance.value})")
    elif g.mode is not None and _CAUTION[g.mode.value] > _CAUTION[settings_mode]:
        said.append(f"{_mode_name(g.mode.value)} required by {g.mode.by}")
    for name, decided in (
        ("cooldown", g.cooldown_s),
        ("action budget", g.max_actions),
        ("min replicas", g.min_replicas),
        ("max replicas", g.max_replicas),
    ):
        if decided is not None:
            said.append(f"{name} {decided.value:g} from {decided.by}")
    if g.receivers:
        said.append(f"escalations to {', '.join(g.receivers)}")
    governed_by = ", ".join(g.policies)
    return GuardResult("policy", True, "; ".join(said) or f"governed by {governed_by}")


def _mode_name(mode: Mode) -> str:
    return "dry-run" if mode is Mode.DRY_RUN else str(mode)
