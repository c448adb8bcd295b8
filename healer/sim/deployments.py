"""Deployments as the API server handles them: defaults, validation, the ``scale``
subresource's view, and the manifest a scenario workload starts from.
"""

from __future__ import annotations

from healer.sim.objects import ApiError, K8s, selector_string
from healer.sim.scenario import WorkloadSpec


def scale_of(dep: K8s) -> K8s:
    meta = dep["metadata"]
    selector = selector_string(dep["spec"]["selector"])
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": dep["spec"]["replicas"]},
        "status": {"replicas": dep.get("status", {}).get("replicas", 0), "selector": selector},
    }


def manifest(spec: WorkloadSpec) -> K8s:
    labels = {"app": spec.name, **spec.labels}
    res = spec.resources
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": dict(spec.annotations),
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": spec.name,
                            "image": spec.image,
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {
                                "requests": {
                                    "cpu": f"{round(res.cpu_request_cores * 1000)}m",
                                    "memory": str(res.memory_limit_bytes),
                                },
                                "limits": {
                                    "cpu": f"{round(res.cpu_limit_cores * 1000)}m",
                                    "memory": str(res.memory_limit_bytes),
                                },
                            },
                        }
                    ]
                },
            },
        },
    }


def default(obj: K8s) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"})
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})


def validate(obj: K8s) -> None:
    name = obj["metadata"].get("name")
    where = f'Deployment.apps "{name}" is invalid'
    if not isinstance(name, str) or not name:
        raise ApiError(422, "Invalid", f"{where}: metadata.name: Required value")
    spec = obj["spec"]
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(422, "Invalid", f"{where}: spec.replicas: Invalid value: {replicas!r}")
    selector = (spec.get("selector") or {}).get("matchLabels")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        raise ApiError(
            422,
            "Invalid",
            f"{where}: spec.template.metadata.labels: Invalid value: "
            "`selector` does not match template `labels`",
        )
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise ApiError(422, "Invalid", f"{where}: spec.template.spec.containers: Required value")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise ApiError(
                422,
                "Invalid",
                f"{where}: spec.template.spec.containers[{i}]: name and image are required",
            )
