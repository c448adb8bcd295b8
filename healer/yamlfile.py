"""Validated YAML files whose errors name the file, the line and the field.

Playbooks and scenarios are untrusted input written by people. Pydantic says *where in
the data* an error is (its ``loc``) but not where in the file; so the text is composed
into a YAML node tree first, whose nodes carry their start marks, and the ``loc`` is
walked down that tree to find the line. Duplicate keys are errors too (PyYAML would
silently keep the last one). The message reports one error, a wrong value before a
missing field (what the author wrote wrong says more than what they left out), and how
many more there are.

Decisions:

- A document is measured before it is constructed: aliases make a tree a graph, and a
  "billion laughs" file of a few hundred bytes expands to 10^9 nodes for every walk
  after it (duplicate keys, pydantic), an apparent hang. Its size with aliases expanded
  is counted once per node (linear in the file), and a document over ``MAX_NODES``, or
  an alias inside its own anchor (a cycle), is refused naming the file and line.
- Nesting deeper than the parser's recursion allows is an error naming the file, not a
  ``RecursionError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from healer.errors import HealerError

M = TypeVar("M", bound=BaseModel)

MAX_NODES = 100_000
"""Nodes a document may hold with its aliases expanded. The largest shipped scenario has
a few hundred and a playbook a few dozen; a hundred thousand leaves room for generated
files while a walk over them still takes milliseconds."""


def read_text(path: Path, error: type[HealerError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc


def load_model(
    text: str, model: type[M], *, where: str, error: type[HealerError], what: str
) -> tuple[M, yaml.MappingNode]:
    """Parse ``text`` (named ``where`` in messages) into ``model``, with its node tree.

    ``what`` names the document in messages ("a playbook must be a mapping").
    """
    root, data = _parse(text, where, error, what)
    _check_duplicate_keys(where, root, (), error)
    try:
        return model.model_validate(data), root
    except ValidationError as exc:
        raise error(_validation_message(where, root, exc, what)) from exc


def load_data(text: str, *, where: str, error: type[HealerError]) -> Any:
    """The plain data of ``text`` (None when it holds no document), under the same
    limits as ``load_model``: for files read without a model of their own (settings)."""
    return _read(text, where, error)[1]


def _read(text: str, where: str, error: type[HealerError]) -> tuple[yaml.Node | None, Any]:
    """The node tree and the plain data of ``text``, in one parse; (None, None) when it
    holds no document. Its size with aliases expanded is checked before it is built."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_size(where, root, error)
        return root, loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise error(_yaml_message(where, exc)) from exc
    except RecursionError as exc:
        raise error(f"{where}: YAML nested too deeply") from exc
    finally:
        loader.dispose()


def line_of(root: yaml.Node, loc: Iterable[int | str]) -> int:
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


def field_name(loc: Iterable[int | str]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _parse(
    text: str, where: str, error: type[HealerError], what: str
) -> tuple[yaml.MappingNode, Any]:
    """The node tree (for line numbers) and the plain data (for pydantic), in one parse."""
    root, data = _read(text, where, error)
    if root is None:
        raise error(f"{where}:1: empty {what} file")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise error(f"{where}:{root.start_mark.line + 1}: a {what} must be a mapping")
    return root, data


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(where: str, root: yaml.Node, error: type[HealerError]) -> None:
    """Refuse a node graph over MAX_NODES once expanded, or with a cycle.

    Each distinct node is visited once (an alias shares its anchor's node), its expanded
    size summed from its children's; iterative, so depth costs no recursion.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, children not yet summed: the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise error(
                    f"{where}:{node.start_mark.line + 1}: more than {MAX_NODES} YAML nodes "
                    "once aliases are expanded (an alias bomb?)"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise error(f"{where}:{node.start_mark.line + 1}: a YAML alias refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _yaml_message(where: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{where}:{exc.problem_mark.line + 1}: YAML syntax error: {problem}"
    return f"{where}: YAML syntax error: {' '.join(str(exc).split())}"


def _validation_message(where: str, root: yaml.MappingNode, exc: ValidationError, what: str) -> str:
    errors = sorted(exc.errors(), key=lambda error: error["type"] == "missing")
    first = errors[0]
    loc = tuple(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}:{line_of(root, loc)}: {field_name(loc) or what}: {message}{more}"


def _child(node: yaml.Node, part: int | str) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key.start_mark.line, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item.start_mark.line, item
    return None


def _check_duplicate_keys(
    where: str, node: yaml.Node, loc: tuple[int | str, ...], error: type[HealerError]
) -> None:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(where, item, (*loc, index), error)
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value)
        if name in seen:
            raise error(
                f"{where}:{key.start_mark.line + 1}: {field_name((*loc, name))}: duplicate key"
            )
        seen.add(name)
        _check_duplicate_keys(where, value, (*loc, name), error)
