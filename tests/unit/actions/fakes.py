"""A cluster to read from, as literal JSON: what ``healer.actions.base.Reads`` serves."""

from __future__ import annotations

from dataclasses import dataclass, field

from healer.errors import PermanentActionError
from healer.types import JsonObject, WorkloadRef


@dataclass
class FakeReads:
    deployments: dict[str, JsonObject] = field(default_factory=dict)
    sets: dict[str, list[JsonObject]] = field(default_factory=dict)
    pods: dict[str, JsonObject] = field(default_factory=dict)
    hpas: dict[str, JsonObject] = field(default_factory=dict)
    statefulsets: dict[str, JsonObject] = field(default_factory=dict)
    controller_revisions: dict[str, list[JsonObject]] = field(default_factory=dict)
    daemonsets: dict[str, JsonObject] = field(default_factory=dict)
    nodes: dict[str, JsonObject] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def deployment(self, target: WorkloadRef) -> JsonObject:
        self.reads.append(f"deployment {target.name}")
        if target.name not in self.deployments:
            raise PermanentActionError(f"404 Not Found: deployments {target.name}")
        return self.deployments[target.name]

    def workload(self, target: WorkloadRef) -> JsonObject:
        if target.kind == "Deployment":
            return self.deployment(target)
        if target.kind == "DaemonSet":
            self.reads.append(f"daemonset {target.name}")
            if target.name not in self.daemonsets:
                raise PermanentActionError(f"404 Not Found: daemonsets {target.name}")
            return self.daemonsets[target.name]
        self.reads.append(f"statefulset {target.name}")
        if target.name not in self.statefulsets:
            raise PermanentActionError(f"404 Not Found: statefulsets {target.name}")
        return self.statefulsets[target.name]

    def revisions(self, target: WorkloadRef) -> list[JsonObject]:
        self.reads.append(f"controllerrevisions {target.name}")
        return self.controller_revisions.get(target.name, [])

    def replicasets(self, target: WorkloadRef) -> list[JsonObject]:
        self.reads.append(f"replicasets {target.name}")
        return self.sets.get(target.name, [])

    def pod(self, namespace: str, name: str) -> JsonObject | None:
        self.reads.append(f"pod {name}")
        return self.pods.get(name)

    def pods_of(self, target: WorkloadRef) -> list[JsonObject]:
        self.reads.append(f"pods of {target.name}")
        return list(self.pods.values())

    def hpa(self, namespace: str, name: str) -> JsonObject:
        self.reads.append(f"hpa {name}")
        return self.hpas[name]

    def node(self, name: str) -> JsonObject | None:
        self.reads.append(f"node {name}")
        return self.nodes.get(name)
