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
  never remediated.
- Action parameters are typed. ``headroom`` and ``max_step_factor`` apply to ``scale``
  only; giving them to another action is an error rather than silently ignored.
- ``on_failure`` is ``escalate`` or the name of another playbook; chains must end in
  ``escalate`` (a loop is an error).
- Duplicate keys in a YAML mapping are an error (PyYAML would keep the last one silently).
- The message reports one error, a wrong value before a missing field, and how many more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from healer.errors import PlaybookError
from healer.types import ActionKind, Cause, Mode, Signal

ESCALATE = "escalate"
"""The ``on_failure`` value that hands the incident to a person; no playbook may use it."""

_SUFFIXES = (".yaml", ".yml")


def _normalise_mode(value: object) -> object:
    """Accept ``dry-run`` too, the spelling the ``healer.io/mode`` annotation allows."""
    return value.replace("-", "_") if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    causes: tuple[Cause, ...] = Field(min_length=1)
    """Any of these causes matches."""
    min_confidence: float = Field(ge=0.0, le=1.0)
    """The diagnosis must be at least this sure of its cause. Required: no silent default."""
    signals: tuple[Signal, ...] = ()
    """When not empty, at least one of these must be among the finding's deviating signals."""
    namespaces: tuple[str, ...] = ()
    """When not empty, only workloads in these namespaces match."""

    @field_validator("causes")
    @classmethod
    def _no_unknown(cls, causes: tuple[Cause, ...]) -> tuple[Cause, ...]:
        if Cause.UNKNOWN in causes:
            raise ValueError("cause 'unknown' cannot be remediated; it is always escalated")
        return causes


class ActionParams(_Model):
    headroom: float = Field(default=1.25, ge=1.0, le=10.0)
    """scale: replicas needed to bring CPU back to baseline, times this. 1.25 aims at 80%
    of the normal load per replica, so a little more traffic does not re-trigger."""
    max_step_factor: float = Field(default=3.0, gt=1.0, le=10.0)
    """scale: never more than this many times the current replicas in one action, so a
    wrong diagnosis cannot blow up the cluster's capacity in one step."""


class Action(_Model):
    kind: ActionKind
    params: ActionParams = ActionParams()

    @field_validator("params")
    @classmethod
    def _params_fit_kind(cls, params: ActionParams, info: ValidationInfo) -> ActionParams:
        kind = info.data.get("kind")
        if kind is not None and kind is not ActionKind.SCALE and params.model_fields_set:
            names = ", ".join(sorted(params.model_fields_set))
            raise ValueError(f"{names} apply to scale only, not to {kind}")
        return params


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
        return _line_of(self.root, loc)


def _playbook_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PlaybookError(f"{directory}: no such playbook directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise PlaybookError(f"{directory}: no playbook files (*.yaml, *.yml)")
    return files


def _load_file(path: Path) -> _Loaded:
    root, data = _parse(path)
    _check_duplicate_keys(path, root, ())
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError(_validation_message(path, root, exc)) from exc
    return _Loaded(path, root, playbook)


def _parse(path: Path) -> tuple[yaml.MappingNode, Any]:
    """The node tree (for line numbers) and the plain data (for pydantic), in one parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(f"{path}: cannot read: {exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise PlaybookError(_yaml_message(path, exc)) from exc
    finally:
        loader.dispose()
    if root is None:
        raise PlaybookError(f"{path}:1: empty playbook file")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        line = root.start_mark.line + 1
        raise PlaybookError(f"{path}:{line}: a playbook must be a mapping (name, match, ...)")
    return root, data


def _yaml_message(path: Path, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{path}:{exc.problem_mark.line + 1}: YAML syntax error: {problem}"
    return f"{path}: YAML syntax error: {' '.join(str(exc).split())}"


def _validation_message(path: Path, root: yaml.MappingNode, exc: ValidationError) -> str:
    # What the author wrote wrong says more than what they left out: report it first.
    errors = sorted(exc.errors(), key=lambda error: error["type"] == "missing")
    first = errors[0]
    loc = tuple(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    field = _field_name(loc) or "playbook"
    return f"{path}:{_line_of(root, loc)}: {field}: {message}{more}"


def _field_name(loc: Iterable[int | str]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _line_of(root: yaml.Node, loc: Iterable[int | str]) -> int:
    """1-based line of the deepest node of ``loc`` present in the file.

    A mapping entry is located by its key, so an unknown field points at its own line and
    a missing field at the mapping that lacks it.
    """
    node, line = root, root.start_mark.line
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        line, node = child
    return line + 1


def _child(node: yaml.Node, part: int | str) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key.start_mark.line, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item.start_mark.line, item
    return None


def _check_duplicate_keys(path: Path, node: yaml.Node, loc: tuple[int | str, ...]) -> None:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(path, item, (*loc, index))
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value)
        if name in seen:
            field = _field_name((*loc, name))
            raise PlaybookError(f"{path}:{key.start_mark.line + 1}: {field}: duplicate key")
        seen.add(name)
        _check_duplicate_keys(path, value, (*loc, name))


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
