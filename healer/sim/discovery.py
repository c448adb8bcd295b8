"""API discovery documents, generated from the resource table in ``healer.sim.kinds``.

Clients learn what a server serves before they call it. kubectl (1.30 and later) first
asks ``/api`` and ``/apis`` for aggregated discovery (``apidiscovery.k8s.io/v2``, one
document for everything); older clients, and the official Python client, read the legacy
documents: ``APIVersions`` at ``/api``, ``APIGroupList`` at ``/apis`` and one
``APIResourceList`` per group version. Both are served, from the same table.
"""

from __future__ import annotations

from collections.abc import Sequence

from healer.sim.kinds import GROUP_VERSIONS, KINDS, Kind
from healer.sim.objects import K8s

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    """True when the Accept header asks for aggregated discovery v2 first."""
    first = accept.split(",")[0].replace(" ", "")
    return "as=APIGroupDiscoveryList" in first and "v=v2;" in first + ";"


def api_versions() -> K8s:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def _groups(extra: Sequence[Kind] = ()) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for gv in dict.fromkeys((*GROUP_VERSIONS, *(k.group_version for k in extra))):
        if "/" in gv:
            group, version = gv.split("/")
            groups.setdefault(group, []).append(version)
    return groups


def api_group_list(extra: Sequence[Kind] = ()) -> K8s:
    """``/apis``; ``extra``: the kinds CustomResourceDefinitions serve."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{versions[0]}",
                    "version": versions[0],
                },
            }
            for group, versions in _groups(extra).items()
        ],
    }


def api_resource_list(group_version: str, extra: Sequence[Kind] = ()) -> K8s:
    resources: list[K8s] = []
    for kind in (k for k in (*KINDS, *extra) if k.group_version == group_version):
        resources.append(
            {
                "name": kind.resource,
                "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": list(kind.verbs),
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            }
        )
        for sub in kind.subresources:
            group, _, version = sub.group_version.rpartition("/")
            resources.append(
                {
                    "name": f"{kind.resource}/{sub.name}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "group": group,
                    "version": version,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _aggregated_resource(kind: Kind) -> K8s:
    entry: K8s = {
        "resource": kind.resource,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.kind.lower(),
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    if kind.subresources:
        entry["subresources"] = [
            {
                "subresource": sub.name,
                "responseKind": {
                    "group": sub.group_version.rpartition("/")[0],
                    "version": sub.group_version.rpartition("/")[2],
                    "kind": sub.kind,
                },
                "verbs": list(sub.verbs),
            }
            for sub in kind.subresources
        ]
    return entry


def aggregated(*, core: bool, extra: Sequence[Kind] = ()) -> K8s:
    """The aggregated discovery document of ``/api`` (core) or ``/apis`` (named groups)."""
    groups = {"": ["v1"]} if core else _groups(extra)
    items = []
    for group, versions in groups.items():
        metadata: K8s = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append(
            {
                "metadata": metadata,
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _aggregated_resource(k)
                            for k in (*KINDS, *extra)
                            if k.group == group and k.version == version
                        ],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
