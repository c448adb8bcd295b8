"""Rendering an application's path in Git into the Kubernetes objects it stands for.

Two source types, as Argo CD names them: a **Directory** of plain manifests (every
``.yaml``, ``.yml`` and ``.json`` file, several documents to a file; Argo CD reads the
top level only unless told to recurse, Flux reads every level), and **Kustomize**,
when the path holds a ``kustomization.yaml``: its ``resources`` (files, or directories
with a kustomization of their own), ``namespace`` and ``images`` overrides (``name``,
``newName``, ``newTag``, ``digest``), the fields a release pipeline changes. Argo CD's
own image overrides (``spec.source.kustomize.images``, ``name:tag`` or
``name=newName:tag``) and Flux's (a Kustomization's ``spec.images``, in kustomize's
form) apply on top.

Decisions:

* A small renderer of our own rather than the ``kustomize`` binary: the simulator runs
  with nothing installed, and a release needs only these fields. Any other kustomization
  field (patches, generators, components, ``helmCharts``) is refused with a message
  naming the file and the field, never ignored: a manifest rendered wrong would be worse
  than an error the Application shows.
* Helm charts (``image.repository``/``image.tag`` in values) are not rendered: a faithful
  render needs Go templates; a chart path is refused the same way.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from healer.sim.objects import K8s

_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images"}
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class RenderError(Exception):
    """The path cannot be rendered; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Rendered:
    source_type: str
    """``Directory`` or ``Kustomize``, as Argo CD's ``status.sourceType``."""
    objects: tuple[K8s, ...]


def render(
    files: Mapping[str, bytes],
    *,
    recurse: bool = False,
    image_overrides: Iterable[str | Mapping[str, Any]] = (),
) -> Rendered:
    """The objects ``files`` (paths relative to the app path) stand for.

    ``recurse`` reads subdirectories of a plain directory (Flux does; Argo CD does with
    ``directory.recurse``). Raises RenderError.
    """
    if "Chart.yaml" in files:
        raise RenderError("Chart.yaml: Helm charts are not rendered by the simulated cluster")
    if any(name in files for name in _KUSTOMIZATIONS):
        objects = _kustomize(files, "")
        source_type = "Kustomize"
    else:
        objects = _directory(files, recurse=recurse)
        source_type = "Directory"
    overrides = [_override(entry) for entry in image_overrides]
    if overrides:
        for obj in objects:
            _set_images(obj, overrides)
    return Rendered(source_type, tuple(objects))


def _directory(files: Mapping[str, bytes], *, recurse: bool) -> list[K8s]:
    objects: list[K8s] = []
    for name in sorted(files):
        if not name.endswith(_MANIFEST_SUFFIXES) or (not recurse and "/" in name):
            continue
        objects.extend(_documents(name, files[name]))
    return objects


def _documents(name: str, data: bytes) -> list[K8s]:
    """The objects in one manifest file; each must be an object with apiVersion, kind
    and metadata.name."""
    try:
        text = data.decode()
        docs = [json.loads(text)] if name.endswith(".json") else list(yaml.safe_load_all(text))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise RenderError(f"{name}: not a valid manifest: {exc}".splitlines()[0]) from exc
    objects = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        where = f"{name} (document {i + 1})"
        if not isinstance(doc, dict):
            raise RenderError(f"{where}: a manifest must be an object")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise RenderError(f"{where}: {key}: Required value")
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise RenderError(f"{where}: metadata.name: Required value")
        objects.append(doc)
    return objects


def _kustomization(files: Mapping[str, bytes], folder: str) -> tuple[str, K8s]:
    for candidate in _KUSTOMIZATIONS:
        name = posixpath.join(folder, candidate) if folder else candidate
        if name in files:
            break
    else:
        raise RenderError(f"{folder or '.'}: no kustomization.yaml")
    try:
        body = yaml.safe_load(files[name].decode())
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RenderError(f"{name}: not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(body, dict):
        raise RenderError(f"{name}: a kustomization must be an object")
    unsupported = sorted(set(body) - _SUPPORTED)
    if unsupported:
        raise RenderError(
            f"{name}: {', '.join(unsupported)}: not supported by the simulated cluster's "
            f"renderer (it reads {', '.join(sorted(_SUPPORTED - {'apiVersion', 'kind'}))})"
        )
    return name, body


def _kustomize(files: Mapping[str, bytes], folder: str) -> list[K8s]:
    name, body = _kustomization(files, folder)
    objects: list[K8s] = []
    for entry in body.get("resources") or []:
        if not isinstance(entry, str) or "://" in entry:
            raise RenderError(f"{name}: resources: {entry!r}: only local files and folders")
        target = posixpath.normpath(posixpath.join(folder, entry))
        if target.startswith(".."):
            raise RenderError(f"{name}: resources: {entry!r} is outside the app path")
        if target in files:
            objects.extend(_documents(target, files[target]))
        elif any(n.startswith(target + "/") for n in files):
            objects.extend(_kustomize(files, target))
        else:
            raise RenderError(f"{name}: resources: {entry!r}: no such file or folder")
    namespace = body.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise RenderError(f"{name}: namespace: must be a string")
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
    images = body.get("images") or []
    if not isinstance(images, list) or not all(
        isinstance(i, dict) and isinstance(i.get("name"), str) for i in images
    ):
        raise RenderError(f"{name}: images: each entry needs a name")
    for obj in objects:
        _set_images(obj, images)
    return objects


def split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; tag and digest empty when absent."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def _override(entry: str | Mapping[str, Any]) -> K8s:
    """An image override: Argo CD's string form, or a kustomize-style entry (Flux's
    Kustomization ``spec.images``) with a ``name``."""
    if isinstance(entry, str):
        return _parse_override(entry)
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise RenderError(f"images: {dict(entry)!r}: an entry needs a name")
    return dict(entry)


def _parse_override(text: str) -> K8s:
    """Argo CD's ``kustomize.images`` entry (``name:tag``, ``name=newName:tag``,
    ``name@digest``) as a kustomization ``images`` entry."""
    alias, _, image = text.partition("=")
    new_name, tag, digest = split_image(image or alias)
    entry: K8s = {"name": split_image(alias)[0] if image else new_name}
    if image:
        entry["newName"] = new_name
    if tag:
        entry["newTag"] = tag
    if digest:
        entry["digest"] = digest
    return entry


def _set_images(obj: K8s, images: list[Any]) -> None:
    """Apply kustomize ``images`` entries to the containers of ``obj``'s pod template."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            if not isinstance(container, dict) or not isinstance(container.get("image"), str):
                continue
            name, tag, digest = split_image(container["image"])
            for entry in images:
                if entry["name"] != name:
                    continue
                name = str(entry.get("newName") or name)
                tag = str(entry.get("newTag") or tag)
                digest = str(entry.get("digest") or "")
                image = name + (f":{tag}" if tag and not digest else "")
                container["image"] = image + (f"@{digest}" if digest else "")
                break
