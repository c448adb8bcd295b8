"""Playbooks: the YAML files that say which action answers which diagnosis.

A playbook is untrusted input, so it goes through pydantic models with ``extra="forbid"``
once, at start-up, and a bad file stops start-up with a one-line ``PlaybookError`` that
names the file, the line and the field (``playbooks/bad.yaml:7: action.kind: ...``).
Pydantic reports *where* in the data an error is (its ``loc``) but not where in the file;
so each file is composed into a YAML node tree first, whose nodes carry their start
marks, and the ``loc`` is walked down that tree to find the line.

Decisions:

- One playbook per file; files are read in name order and that order is the matching
  order (the first matching playbook wins), so it is visible in ``ls``.
- ``unknown`` is not a cause a playbook may match: an undiagnosed anomaly is escalated,
  never remediated. A playbook naming ``alerts`` (and no causes) matches an incident
  whose evidence is one of those alerts firing, whatever it was diagnosed.
- Action parameters are typed, by the action kind's own settings model
  (``healer.actions``): ``headroom`` and ``max_step_factor`` apply to ``scale`` only;
  giving them to another action is an error rather than silently ignored. A kind with
  no handler in the registry is refused.
- ``on_failure`` is ``escalate`` or the name of another playbook; chains must end in
  ``escalate`` (a loop is an error).
- ``match.kinds`` names the target kinds a playbook is for; a kind its action does not
  support (a scale of a DaemonSet) is refused at load, naming the file, the line and
  the entry, rather than failing on the cluster later.
- The node actions (cordon, drain, uncordon) are refused: nodes are healed by the node
  watch on ``nodes.*`` settings, one step after another, never by one playbook action.
- Duplicate keys in a YAML mapping are an error (PyYAML would keep the last one silently).
- The message reports one error, a wrong value before a missing field, and how many more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from healer.actions import REGISTRY
from healer.actions.base import NoSettings, Settings
from healer.actions.scale import ScaleSettings
from healer.errors import PlaybookError
from healer.types import ActionKind, Cause, Mode, Signal, TargetKind
from healer.yamlfile import line_of, load_model, read_text

ESCALATE = "escalate"
"""The ``on_failure`` value that hands the incident to a person; no playbook may use it."""

_SUFFIXES = (".yaml", ".yml")


def _normalise_mode(value: object) -> object:
    """Accept ``dry-run`` too, the spelling the ``healer.io/mode`` annotation allows."""
    return value.replace("-", "_") if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


AlertName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=253)]
"""An ``alertname`` as Prometheus rules spell it."""


class Match(_Model):
    causes: tuple[Cause, ...] = ()
    """Any of these causes matches; required unless ``alerts`` names some."""
    min_confidence: float = Field(ge=0.0, le=1.0)
    """The diagnosis must be at least this sure of its cause. Required: no silent default."""
    signals: tuple[Signal, ...] = ()
    """When not empty, at least one of these must be among the finding's deviating signals."""
    namespaces: tuple[str, ...] = ()
    """When not empty, only workloads in these namespaces match."""
    kinds: tuple[TargetKind, ...] = ()
    """When not empty, only workloads of these kinds match (``Deployment``,
    ``StatefulSet``...); each must be a kind the playbook's action supports. Empty: every
    kind the action supports."""
    alerts: tuple[AlertName, ...] = ()
    """When not empty, one of these Alertmanager alerts (by ``alertname``) must be firing
    on the workload, taken as evidence by the cycle. An incident an alert opened is
    diagnosed ``unknown`` at full confidence (sure only that the alert fires): a playbook
    for it lists no causes."""

    @field_validator("causes")
    @classmethod
    def _no_unknown(cls, causes: tuple[Cause, ...]) -> tuple[Cause, ...]:
        if Cause.UNKNOWN in causes:
            raise ValueError("cause 'unknown' cannot be remediated; it is always escalated")
        return causes

    @model_validator(mode="after")
    def _causes_or_alerts(self) -> Match:
        if not self.causes and not self.alerts:
            raise ValueError("causes: name at least one cause, or alerts to match")
        return self


ActionParams = ScaleSettings
"""The settings of a scale (kept under this name for callers)."""


class Action(_Model):
    kind: ActionKind
    params: SerializeAsAny[Settings] = Field(default_factory=NoSettings, validate_default=True)
    """The kind's settings (its module's ``Settings`` model); ``{}`` when it has none."""

    @field_validator("kind")
    @classmethod
    def _has_handler(cls, kind: ActionKind) -> ActionKind:
        if kind not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ValueError(f"no handler for action kind {kind!r}; known: {known}")
        if REGISTRY[kind].targets == (TargetKind.NODE,):
            raise ValueError(
                f"{kind} acts on nodes, which healer heals by its node watch (settings "
                "nodes.*), not by a playbook"
            )
        return kind

    @field_validator("params", mode="before")
    @classmethod
    def _params_fit_kind(cls, params: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        if kind not in REGISTRY:  # the kind's own error is reported
            return NoSettings()
        model = REGISTRY[kind].settings
        if isinstance(params, Settings):
            params = params.model_dump(exclude_unset=True)
        try:
            return model.model_validate(params if params is not None else {})
        except ValidationError as exc:
            raise ValueError(_settings_error(kind, exc)) from None


def _settings_error(kind: ActionKind, exc: ValidationError) -> str:
    """One line: a value out of range, or fields that belong to another kind."""
    errors = exc.errors()
    extra = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        names = ", ".join(sorted(extra))
        owners = [str(k) for k, a in REGISTRY.items() if set(extra) <= set(a.settings.model_fields)]
        if owners:
            return f"{names} apply to {' and '.join(owners)} only, not to {kind}"
        return f"{names}: not a parameter of {kind}"
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"])
    return f"{field}: {first['msg']}" if field else str(first["msg"])


class Verify(_Model):
    within_s: float = Field(gt=0.0)
    """How long the verifier waits for the workload to return to baseline."""
    signals: tuple[Signal, ...] = Field(min_length=1)
    """These signals must be back at their baseline for the action to count as healing."""


class Playbook(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)
    """Lower-case letters, digits and dashes, like a Kubernetes name; unique across files."""
    description: str = Field(min_length=1)
    match: Match
    action: Action
    mode: Annotated[Mode, BeforeValidator(_normalise_mode)] = Mode.APPROVAL
    """Approval unless the author opts in: the most cautious of this, the global and the
    workload's mode wins."""
    verify: Verify
    on_failure: str = ESCALATE
    """``escalate`` or the name of the playbook to try next."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == ESCALATE:
            raise ValueError(f"'{ESCALATE}' is reserved for on_failure")
        return name


def find_playbook(playbooks: Sequence[Playbook], name: str) -> Playbook:
    """The playbook called ``name``; KeyError if there is none (names are validated at load,
    so a miss is a bug in the caller)."""
    for playbook in playbooks:
        if playbook.name == name:
            return playbook
    raise KeyError(f"no playbook named {name!r}")


def load_playbooks(directory: Path) -> tuple[Playbook, ...]:
    """Read and validate every ``*.yaml``/``*.yml`` file of ``directory``, in name order.

    Reads files only; raises PlaybookError on the first problem, naming file, line, field.
    """
    loaded = [_load_file(path) for path in _playbook_files(directory)]
    _check_unique_names(loaded)
    _check_on_failure(loaded)
    return tuple(item.playbook for item in loaded)


@dataclass(frozen=True)
class _Loaded:
    path: Path
    root: yaml.MappingNode
    playbook: Playbook

    def line(self, *loc: int | str) -> int:
        return line_of(self.root, loc)


def _playbook_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PlaybookError(f"{directory}: no such playbook directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise PlaybookError(f"{directory}: no playbook files (*.yaml, *.yml)")
    return files


def _load_file(path: Path) -> _Loaded:
    text = read_text(path, PlaybookError)
    playbook, root = load_model(
        text, Playbook, where=str(path), error=PlaybookError, what="playbook"
    )
    loaded = _Loaded(path, root, playbook)
    _check_kinds(loaded)
    return loaded


def _check_kinds(item: _Loaded) -> None:
    """Every kind in ``match.kinds`` is one the playbook's action supports."""
    action = REGISTRY[item.playbook.action.kind]
    for i, kind in enumerate(item.playbook.match.kinds):
        if not action.supports(kind):
            known = ", ".join(t.value for t in action.targets)
            raise PlaybookError(
                f"{item.path}:{item.line('match', 'kinds', i)}: match.kinds[{i}]: action "
                f"{action.kind} does not support a {kind.value} (it supports {known})"
            )


def _check_unique_names(loaded: Sequence[_Loaded]) -> None:
    first: dict[str, _Loaded] = {}
    for item in loaded:
        name = item.playbook.name
        if name in first:
            other = first[name]
            raise PlaybookError(
                f"{item.path}:{item.line('name')}: name: playbook {name!r} is already "
                f"defined in {other.path}:{other.line('name')}"
            )
        first[name] = item


def _check_on_failure(loaded: Sequence[_Loaded]) -> None:
    by_name = {item.playbook.name: item for item in loaded}
    for item in loaded:
        target = item.playbook.on_failure
        if target != ESCALATE and target not in by_name:
            known = ", ".join(sorted(by_name))
            raise PlaybookError(
                f"{item.path}:{item.line('on_failure')}: on_failure: unknown playbook "
                f"{target!r}; expected {ESCALATE!r} or one of: {known}"
            )
    for item in loaded:
        _check_chain_ends(item, by_name)


def _check_chain_ends(start: _Loaded, by_name: dict[str, _Loaded]) -> None:
    chain = [start.playbook.name]
    name = start.playbook.on_failure
    while name != ESCALATE:
        if name in chain:
            loop = " -> ".join([*chain, name])
            raise PlaybookError(
                f"{start.path}:{start.line('on_failure')}: on_failure: chain {loop} "
                f"never ends; end it with {ESCALATE!r}"
            )
        chain.append(name)
        name = by_name[name].playbook.on_failure
