"""Where an image is pinned in a repository's path, and the edit that pins another one.

Three layouts, as people write them:

- plain manifests: a container's ``image: repo:tag`` (any mapping with an ``image``
  scalar, so Deployments, StatefulSets, DaemonSets and init containers alike);
- kustomize: an entry of ``images:`` in ``kustomization.yaml`` (``name`` with
  ``newName``, ``newTag`` and/or ``digest``) whose result is the image;
- Helm values: an ``image:`` mapping with ``repository`` and ``tag`` (and optionally
  ``registry``), in any values file.

Decisions:

- Files are parsed with PyYAML's composer, which keeps each scalar's position, and an
  edit replaces exactly that scalar's characters: comments, key order, quoting and
  every other line stay as the people who wrote them left them, so the commit's diff is
  the image and nothing else.
- A replacement keeps the scalar's quoting, and quotes a plain value YAML would read as
  something other than a string (``tag: 1.10`` is a float).
- A pin that would need a key added (a kustomize entry with no ``newName`` when the
  repository itself changes, a digest to drop) is refused with the file and the entry:
  healer edits pins, it does not restructure files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from healer.errors import PermanentActionError

KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
SKIPPED_DIRS = frozenset({".git", "node_modules"})


@dataclass(frozen=True)
class Image:
    """An image reference split as kustomize and Helm split it."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> Image:
        name, _, digest = ref.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            return cls(name[:colon], name[colon + 1 :], digest or None)
        return cls(name, None, digest or None)

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{digest}"


@dataclass(frozen=True)
class Change:
    """One container's image: the bad one running now, the good one to pin again."""

    bad: str
    good: str


@dataclass(frozen=True)
class Edit:
    """Characters ``start:end`` of ``file`` (relative to the repository) become ``text``."""

    file: str
    start: int
    end: int
    text: str
    layout: str
    """``manifest``, ``kustomize`` or ``helm``: which layout pinned it."""


def find_edits(root: Path, path: str, changes: Sequence[Change]) -> tuple[Edit, ...]:
    """Every edit that pins each change's good image where its bad one is pinned under
    ``root/path``; PermanentActionError naming the path when a bad image is pinned
    nowhere there."""
    base = (root / path).resolve()
    if not base.is_relative_to(root.resolve()) or not base.exists():
        raise PermanentActionError(f"path {path!r} does not exist in the repository")
    files = list(_yaml_files(base))
    edits: list[Edit] = []
    for change in changes:
        found = [e for f in files for e in _edits_in(root, f, change)]
        if not found:
            raise PermanentActionError(
                f"no image to change at path {path!r}: {change.bad} is pinned in none of "
                f"its {len(files)} YAML files (plain manifests, kustomize images, Helm values)"
            )
        edits.extend(found)
    return tuple(edits)


def apply_edits(root: Path, edits: Sequence[Edit]) -> tuple[str, ...]:
    """Write the edits (each file's from its end, so earlier positions hold); the
    files changed."""
    by_file: dict[str, list[Edit]] = {}
    for edit in edits:
        by_file.setdefault(edit.file, []).append(edit)
    for name, file_edits in by_file.items():
        target = root / name
        text = target.read_text(encoding="utf-8")
        for edit in sorted(file_edits, key=lambda e: e.start, reverse=True):
            text = text[: edit.start] + edit.text + text[edit.end :]
        target.write_text(text, encoding="utf-8")
    return tuple(sorted(by_file))


def _yaml_files(base: Path) -> Iterator[Path]:
    if base.is_file():
        yield base
        return
    for entry in sorted(base.rglob("*")):
        if SKIPPED_DIRS & set(entry.parts) or not entry.is_file():
            continue
        if entry.suffix in (".yaml", ".yml") or entry.name in KUSTOMIZATION_FILES:
            yield entry


def _edits_in(root: Path, file: Path, change: Change) -> list[Edit]:
    try:
        text = file.read_text(encoding="utf-8")
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # not ours to judge: the syncer reports a file it cannot read
    name = file.relative_to(root.resolve()).as_posix()
    edits: list[Edit] = []
    for doc in documents:
        if doc is None:
            continue
        if file.name in KUSTOMIZATION_FILES:
            edits.extend(_kustomize(name, doc, change))
        for mapping in _mappings(doc):
            edits.extend(_manifest(name, mapping, change))
            edits.extend(_helm(name, mapping, change))
    return edits


def _mappings(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for _, value in node.value:
            yield from _mappings(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _mappings(item)


def _get(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next(
        (v for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
    )


def _scalar(mapping: yaml.MappingNode, key: str) -> yaml.ScalarNode | None:
    node = _get(mapping, key)
    return node if isinstance(node, yaml.ScalarNode) else None


def _replace(file: str, node: yaml.ScalarNode, value: str, layout: str) -> Edit:
    return Edit(file, node.start_mark.index, node.end_mark.index, _render(node, value), layout)


def _render(node: yaml.ScalarNode, value: str) -> str:
    """``value`` written as ``node`` was: same quotes; quoted when plain would not read
    back as this string."""
    if node.style == "'":
        return "'" + value.replace("'", "''") + "'"
    if node.style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if yaml.safe_load(value) != value or value != value.strip():
        return '"' + value + '"'
    return value


def _manifest(file: str, mapping: yaml.MappingNode, change: Change) -> list[Edit]:
    node = _scalar(mapping, "image")
    if node is None or node.value != change.bad:
        return []
    return [_replace(file, node, change.good, "manifest")]


def _helm(file: str, mapping: yaml.MappingNode, change: Change) -> list[Edit]:
    image = _get(mapping, "image")
    if not isinstance(image, yaml.MappingNode):
        return []
    repo, tag = _scalar(image, "repository"), _scalar(image, "tag")
    if repo is None:
        return []
    registry = _scalar(image, "registry")
    prefix = f"{registry.value}/" if registry is not None and registry.value else ""
    bad, good = Image.parse(change.bad), Image.parse(change.good)
    if f"{prefix}{repo.value}" != bad.repository or (tag.value if tag else None) != bad.tag:
        return []
    if tag is None or good.tag is None or good.digest or bad.digest:
        raise PermanentActionError(f"{file}: image {change.bad} has no tag to set to {good}")
    edits = [_replace(file, tag, good.tag, "helm")]
    if good.repository != bad.repository:
        if not good.repository.startswith(prefix):
            raise PermanentActionError(f"{file}: image.registry would have to change for {good}")
        edits.append(_replace(file, repo, good.repository.removeprefix(prefix), "helm"))
    return edits


def _kustomize(file: str, doc: yaml.Node, change: Change) -> list[Edit]:
    images = _get(doc, "images") if isinstance(doc, yaml.MappingNode) else None
    if not isinstance(images, yaml.SequenceNode):
        return []
    bad, good = Image.parse(change.bad), Image.parse(change.good)
    edits: list[Edit] = []
    for entry in images.value:
        if isinstance(entry, yaml.MappingNode):
            edits.extend(_kustomize_entry(file, entry, bad, good))
    return edits


def _kustomize_entry(file: str, entry: yaml.MappingNode, bad: Image, good: Image) -> list[Edit]:
    name, new_name = _scalar(entry, "name"), _scalar(entry, "newName")
    new_tag, digest = _scalar(entry, "newTag"), _scalar(entry, "digest")
    if name is None:
        return []
    result = Image(
        new_name.value if new_name else name.value,
        new_tag.value if new_tag else None,
        digest.value if digest else None,
    )
    if (result.repository, result.tag, result.digest) != (bad.repository, bad.tag, bad.digest):
        return []
    where = f"{file}: images entry {name.value!r}"
    edits: list[Edit] = []
    for node, old, new, key in (
        (new_tag, bad.tag, good.tag, "newTag"),
        (digest, bad.digest, good.digest, "digest"),
    ):
        if old == new:
            continue
        if node is None or new is None:
            raise PermanentActionError(f"{where}: {key} would have to be added or removed")
        edits.append(_replace(file, node, new, "kustomize"))
    if good.repository != result.repository:
        if new_name is None:
            raise PermanentActionError(f"{where}: newName would have to be added")
        edits.append(_replace(file, new_name, good.repository, "kustomize"))
    return edits
