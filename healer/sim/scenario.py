"""Scenarios: a simulated cluster's workloads and the faults injected into it, as YAML.

A scenario names every fault with the remediation that fixes it (``expect``), so that
tests and benchmarks can score healer against ground truth. Scenario files are untrusted
input: they are validated with pydantic, and errors name the file and the field.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healer.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Model):
    base_rps: float = Field(gt=0)
    """Requests per second at the daily minimum."""
    peak_factor: float = Field(default=1.0, ge=1.0)
    """Traffic at the daily peak over traffic at the minimum."""
    peak_hour_utc: float = Field(default=13.0, ge=0, lt=24)
    peak_width_h: float = Field(default=2.0, gt=0)
    """Standard deviation of the bell-shaped daily peak, hours."""
    noise: float = Field(default=0.03, ge=0, lt=1)
    """Relative standard deviation of scrape-to-scrape noise."""
    bursts_per_h: float = Field(default=1.0, ge=0)
    """Rate of short (one scrape) bursts of +30% traffic, which must not trigger action."""


class Resources(_Model):
    cpu_request_cores: float = Field(default=0.25, gt=0)
    cpu_limit_cores: float = Field(default=0.5, gt=0)
    cpu_seconds_per_request: float = Field(default=0.004, gt=0)
    memory_limit_bytes: int = Field(default=512 * 2**20, gt=0)
    memory_base_bytes: int = Field(default=200 * 2**20, gt=0)


class Behaviour(_Model):
    """How pods running an image behave; a release changes the image, and so this."""

    error_ratio: float = Field(default=0.002, ge=0, le=1)
    latency_s: float = Field(default=0.08, gt=0)
    """p99 latency when idle, seconds."""
    cpu_factor: float = Field(default=1.0, gt=0)


class WorkloadSpec(_Model):
    name: str
    namespace: str = "default"
    replicas: int = Field(default=3, ge=0)
    image: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    traffic: Traffic
    resources: Resources = Resources()


FaultKind = Literal["memory_leak", "overload", "release"]
Remedy = Literal["restart", "scale", "rollback", "none"]


class Event(_Model):
    at_s: float = Field(ge=0)
    """Seconds after the scenario start."""
    kind: FaultKind
    workload: str
    """namespace/name of the Deployment."""
    expect: Remedy
    """The remediation that fixes it; ``none`` marks a benign event."""
    bytes_per_s: float | None = None
    """memory_leak: growth of each affected container's working set."""
    factor: float | None = None
    """overload: traffic multiplier reached at the end of ``ramp_s``."""
    ramp_s: float = 60.0
    image: str | None = None
    """release: the new image."""


class Scenario(_Model):
    name: str
    description: str
    start: datetime
    step_s: float = Field(default=15.0, gt=0)
    """Scrape interval: metrics are sampled once per step."""
    seed: int = 0
    images: dict[str, Behaviour] = {}
    """Behaviour per image; images not listed behave as ``Behaviour()``."""
    workloads: list[WorkloadSpec] = Field(min_length=1)
    events: list[Event] = []

    def behaviour(self, image: str) -> Behaviour:
        return self.images.get(image, Behaviour())


def builtin_names() -> list[str]:
    folder = resources.files("healer.sim") / "scenarios"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path.

    Raises ConfigError naming the scenario (and field) at fault.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"scenario file {path}: {exc.strerror}") from exc
        return _parse(text, str(path))
    if name_or_path not in builtin_names():
        known = ", ".join(builtin_names())
        raise ConfigError(f"unknown scenario {name_or_path!r} (known: {known})")
    text = (resources.files("healer.sim") / "scenarios" / f"{name_or_path}.yaml").read_text()
    return _parse(text, f"scenario {name_or_path}")


def _parse(text: str, where: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
        return Scenario.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {field}: {first['msg']}") from exc
