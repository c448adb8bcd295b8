"""Alertmanager's firing alerts as the cycle's evidence: which workload, and whether to act.

The API stores each alert as delivered; every cycle the daemon reads the firing alerts
it has not looked at and settles each one (``AlertDisposition``):

- its labels name no workload (``namespace`` with ``deployment`` or ``statefulset``)
  but a pod (``namespace`` with ``pod``): the pod's controller, read from the cluster
  through its owner references (``PodOwners``), is the workload; a pod that is gone is
  recorded, never acted on; a pod of anything healer does not heal (a bare pod, a Job)
  or no pod at all: kept, unresolved;
- the guards deny its namespace: recorded, never acted on;
- the cluster cannot read the workload (it does not exist): recorded, never acted on;
- its workload has an open incident: the alert joins it, listed on the incident;
- otherwise it opens one, with a finding whose cause is the alert (``finding``),
  diagnosed ``unknown`` at full confidence (``diagnosis``): only a playbook matching
  the alert by name acts on it (``match.alerts``).

This module holds the pure part: what an alert names and says. The cycle does the
reading and the recording.

Decisions: the alert's finding has no deviating signals and a score of 1 (the alert is
sure of itself; the detector's view of the workload arrives with its own findings,
which join the incident); its onset is the alert's ``startsAt``; its model version
names the alert, so the timeline says where the finding came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from healer.config import GuardSettings
from healer.decide.guards import namespace_verdict
from healer.types import Alert, AlertDisposition, Cause, Diagnosis, Finding, WorkloadRef

MODEL_VERSION = "alertmanager"
"""The ``model_version`` of a finding an alert made, followed by the alert's name."""

NOBODY = WorkloadRef("", "Deployment", "")
"""The workload named in the log when an alert names none."""


@runtime_checkable
class PodOwners(Protocol):
    """Resolves a pod to the workload that controls it (``KubeActuator.owner_of_pod``)."""

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None: ...


def namespace_of(alert: Alert) -> str:
    """The namespace an alert is about (its ``namespace`` label), empty when none: the
    shard that handles it (``healer.sharding``)."""
    return alert.labels.get("namespace", "")


def named_pod(alert: Alert) -> tuple[str, str] | None:
    """The (namespace, pod) an alert names when it names no workload."""
    namespace, pod = alert.labels.get("namespace"), alert.labels.get("pod")
    if alert.workload is not None or not namespace or not pod:
        return None
    return namespace, pod


def refusal(
    alert: Alert, guards: GuardSettings, workload: WorkloadRef | None = None
) -> tuple[AlertDisposition, str] | None:
    """Why the alert is never acted on, before the cluster is read; None when it may be.
    ``workload``: what it names, resolved from its pod when its labels name none."""
    workload = workload or alert.workload
    if workload is None:
        pod = alert.labels.get("pod")
        named = f"pod {alert.labels.get('namespace', '?')}/{pod}" if pod else "no workload"
        return AlertDisposition.NO_WORKLOAD, (
            f"{alert.name} names {named}: no namespace and deployment (or statefulset, "
            "daemonset) labels, kept unresolved"
        )
    verdict = namespace_verdict(workload.namespace, guards)
    if not verdict.passed:
        return AlertDisposition.DENIED, f"{alert.name} on {workload}: {verdict.detail}"
    return None


def finding(alert: Alert, workload: WorkloadRef, now: datetime) -> Finding:
    """The finding of an incident the alert opens."""
    onset = min(alert.starts_at, now)
    return Finding(workload, now, 1.0, (), onset, f"{MODEL_VERSION}:{alert.name}")


def diagnosis(alert: Alert, workload: WorkloadRef) -> Diagnosis:
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    # kube-prometheus' summaries end with a full stop, which the sentence adds.
    said = f": {summary.strip().rstrip('.')}" if summary.strip() else ""
    return Diagnosis(workload, Cause.UNKNOWN, 1.0, f"Alertmanager alert {alert.name} firing{said}.")
