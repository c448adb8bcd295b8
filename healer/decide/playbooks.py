"""Playbooks: what to do about which diagnosis, as validated YAML.

A playbook matches a diagnosis (cause, minimum confidence, signals, namespaces), names
one action with its parameters and mode, says how to verify the result, and what to do
when verification fails. Files are untrusted input: every field is validated at start-up
(unknown fields are errors), and an error names the file, the line and the field, so a
typo stops the daemon before it can act on a half-read playbook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healer.errors import PlaybookError
from healer.types import ActionKind, Cause, Mode, Signal


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    causes: tuple[Cause, ...] = Field(min_length=1)
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    signals: tuple[Signal, ...] = ()
    """When not empty, at least one of these must be among the finding's deviating signals."""
    namespaces: tuple[str, ...] = ()
    """When not empty, the workload's namespace must be one of these."""


class ActionSpec(_Model):
    kind: ActionKind
    params: dict[str, float | int | str | bool] = {}


class Verify(_Model):
    within_s: float = Field(default=600.0, gt=0)
    signals: tuple[Signal, ...] = ()


class Playbook(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    match: Match
    action: ActionSpec
    mode: Mode = Mode.AUTO
    verify: Verify = Verify()
    on_failure: str = "escalate"
    """``escalate``, or the name of another playbook to try next."""


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and value."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    lines = {loader.construct_object(k, deep=True): k.start_mark.line + 1 for k, _ in node.value}
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip(v) for k, v in data.items() if k != "__lines__"}
    if isinstance(data, list):
        return [_strip(v) for v in data]
    return data


def _line_of(data: Any, loc: tuple[int | str, ...]) -> int:
    line, node = 1, data
    for part in loc:
        if isinstance(node, dict):
            line = node.get("__lines__", {}).get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


def load_playbook(path: Path) -> Playbook:
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506  # a SafeLoader
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise PlaybookError(f"{path}:{line}: invalid YAML: {exc.problem}") from exc
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}:1: a playbook must be a mapping")
    try:
        return Playbook.model_validate(_strip(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise PlaybookError(f"{path}:{_line_of(raw, first['loc'])}: {field}: {first['msg']}"
                            ) from exc


def load_playbooks(directory: Path) -> tuple[Playbook, ...]:
    """Every ``*.yaml``/``*.yml`` in ``directory``, in file-name order, checked as a set."""
    if not directory.is_dir():
        raise PlaybookError(f"{directory}: playbook directory not found")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise PlaybookError(f"{directory}: no playbook files (*.yaml)")
    books: dict[str, tuple[Path, Playbook]] = {}
    for path in files:
        book = load_playbook(path)
        if book.name in books:
            raise PlaybookError(f"{path}: name: playbook {book.name!r} is already defined in "
                                f"{books[book.name][0]}")
        books[book.name] = (path, book)
    for path, book in books.values():
        if book.on_failure != "escalate" and book.on_failure not in books:
            raise PlaybookError(f"{path}: on_failure: no playbook named {book.on_failure!r}")
    return tuple(book for _, book in books.values())


def find_playbook(playbooks: tuple[Playbook, ...] | list[Playbook], name: str) -> Playbook:
    for book in playbooks:
        if book.name == name:
            return book
    raise PlaybookError(f"no playbook named {name!r}")
