"""Model versions on disk: skops artifacts, model cards, and the registry of versions.

A version is two files in the models folder: ``<version>.skops``, the fitted model saved
with skops, and ``<version>.card.json``, its model card (training data range, features,
parameters, scores, library versions, and the artifact's sha256). ``registry.json`` lists
the versions in the order they were registered.

Loading trusts nothing it has not checked, because an artifact is code's input and may
come from anywhere: a pickle file is refused outright (unpickling runs arbitrary code),
the artifact's sha256 must equal the card's, skops may only rebuild the types this module
names, and the card's features must be the artifact's and those the code computes today.
Every refusal names the file at fault.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from healer.detect.model import JointModel
from healer.errors import DetectError, ModelMismatch
from healer.types import JsonObject, JsonValue

ARTIFACT_SUFFIX = ".skops"
CARD_SUFFIX = ".card.json"
REGISTRY_FILE = "registry.json"
# What skops may rebuild when it loads an artifact: our model and the numpy values in it.
TRUSTED_TYPES = ("healer.detect.model.JointModel",)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pk", ".sav")
# Protocol 2+ pickles start with PROTO (0x80) and the protocol number.
_PICKLE_MAGIC = re.compile(rb"^\x80[\x02-\x05]")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: JointModel
    card: JsonObject
    card_path: Path


def library_versions() -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {"python": platform.python_version()}
    for name in ("healer", "numpy", "scipy", "scikit-learn", "skops"):
        try:
            out[name] = package_version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def next_version(models_dir: Path, prefix: str = "joint") -> str:
    """``<prefix>-<n>`` with n one more than the highest registered or on disk."""
    taken = {entry["version"] for entry in registered(models_dir)}
    taken |= {p.name.removesuffix(CARD_SUFFIX) for p in models_dir.glob(f"*{CARD_SUFFIX}")}
    numbers = [int(v.rsplit("-", 1)[1]) for v in taken if re.fullmatch(rf"{prefix}-\d+", v)]
    return f"{prefix}-{max(numbers, default=0) + 1}"


def save(model: JointModel, *, models_dir: Path, version: str, card: JsonObject) -> Path:
    """Write the artifact and its card; returns the card's path. Refuses to overwrite."""
    import skops.io

    if not _VERSION.match(version):
        raise DetectError(f"model version {version!r}: letters, digits, '.', '_' and '-' only")
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"{version}{ARTIFACT_SUFFIX}"
    card_path = models_dir / f"{version}{CARD_SUFFIX}"
    if artifact.exists() or card_path.exists():
        raise DetectError(f"{card_path}: model version {version} already exists")
    skops.io.dump(model, artifact)
    full: JsonObject = {
        "version": version,
        "artifact": artifact.name,
        "sha256": sha256_of(artifact),
        "features": list(model.features_),
        "parameters": {k: v for k, v in model.get_params().items()},
        "libraries": library_versions(),
        **card,
    }
    card_path.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return card_path


def registered(models_dir: Path) -> list[dict[str, str]]:
    path = models_dir / REGISTRY_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [{"version": str(e["version"]), "registered": str(e["registered"])} for e in raw]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DetectError(f"{path}: not a model registry: {exc}") from exc


def register(models_dir: Path, version: str, *, at: datetime) -> None:
    """Add a saved version to ``registry.json``; registering twice changes nothing."""
    load(version, models_dir=models_dir)  # only a version that loads is registered
    entries = registered(models_dir)
    if any(e["version"] == version for e in entries):
        return
    entries.append({"version": version, "registered": at.isoformat()})
    (models_dir / REGISTRY_FILE).write_text(json.dumps(entries, indent=2) + "\n")


def load(version: str, *, models_dir: Path) -> LoadedModel:
    """Load a version after checking it; a refusal (``DetectError``) names the file."""
    direct = models_dir / version
    if direct.suffix.lower() in PICKLE_SUFFIXES:
        raise DetectError(f"{direct}: refusing a pickle file (loading one runs code); use skops")
    if not _VERSION.match(version):
        raise DetectError(f"model version {version!r}: letters, digits, '.', '_' and '-' only")
    card_path = models_dir / f"{version}{CARD_SUFFIX}"
    card = _read_card(card_path)
    if card.get("version") != version:
        raise ModelMismatch(f"{card_path}: the card is of version {card.get('version')!r}")
    artifact = models_dir / Path(str(card.get("artifact", ""))).name  # never outside the folder
    refuse_pickle(artifact)
    if not artifact.is_file():
        raise DetectError(f"{artifact}: artifact named by {card_path} is missing")
    if sha256_of(artifact) != card.get("sha256"):
        raise ModelMismatch(f"{artifact}: sha256 differs from {card_path}; refusing a changed file")
    model = _load_artifact(artifact)
    expected = list(model.spec.names)
    if list(model.features_) != expected:
        raise ModelMismatch(f"{artifact}: its features are not the ones this healer computes")
    if card.get("features") != expected:
        raise ModelMismatch(f"{card_path}: the card's features disagree with {artifact.name}")
    return LoadedModel(version, model, card, card_path)


def refuse_pickle(path: Path) -> None:
    """Raise if ``path`` is a pickle file, by its name or by its first bytes."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise DetectError(f"{path}: refusing a pickle file (loading one runs code); use skops")
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(2)
        if _PICKLE_MAGIC.match(head):
            raise DetectError(f"{path}: refusing a pickle file (loading one runs code); use skops")


def _read_card(path: Path) -> JsonObject:
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(p.name.removesuffix(CARD_SUFFIX) for p in path.parent.glob("*.card.json"))
        raise DetectError(f"{path}: no such model card (versions: {known or 'none'})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DetectError(f"{path}: cannot read the model card: {exc}") from exc
    if not isinstance(card, dict):
        raise DetectError(f"{path}: a model card is a JSON object")
    return card


def _load_artifact(path: Path) -> JointModel:
    import skops.io

    if not zipfile.is_zipfile(path):
        raise DetectError(f"{path}: not a skops archive")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        unknown = [t for t in untrusted if t not in TRUSTED_TYPES]
        if unknown:
            raise DetectError(f"{path}: refusing to load types {', '.join(unknown)}")
        model = skops.io.load(path, trusted=[t for t in untrusted if t in TRUSTED_TYPES])
    except DetectError:
        raise
    except Exception as exc:  # skops raises many kinds on a damaged archive
        raise DetectError(f"{path}: cannot load the artifact: {exc}") from exc
    if not isinstance(model, JointModel):
        raise DetectError(f"{path}: holds a {type(model).__name__}, not a JointModel")
    return model
