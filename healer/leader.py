"""Leader election over a Lease: only one daemon of several acts on the cluster.

The algorithm is the one Kubernetes' own controllers use (client-go ``leaderelection``):

* every ``retry_period_s`` each daemon reads the Lease; when it holds it, it renews it
  (``renewTime``); when nobody holds it, or the holder has not renewed for
  ``lease_duration_s``, it takes it over. Writes replace the ``resourceVersion`` read,
  so of two daemons that both saw an expired Lease only one wins (the other gets 409).
* Expiry is judged on the *local* clock, from when this daemon first saw the current
  version of the Lease, never by comparing ``renewTime`` with its own clock: daemons
  with skewed clocks still agree.
* The leader stops acting when it could not renew for ``renew_deadline_s``, which is
  shorter than the lease duration, so it has stopped before anyone may take over.
* Before every write to the cluster the leader re-reads the Lease and checks that it is
  still the holder at the version it wrote last (``confirm``), so a daemon that was
  paused (a long GC pause, a frozen VM) cannot act on a lease it lost meanwhile.
* On a graceful stop the leader releases the Lease (empty holder), so a follower takes
  over at its next attempt instead of after the lease duration.

The elector never reads a clock: every call gets ``now``, so the same code runs in
virtual time (tests drive several electors against one simulated cluster) and in real
time (``run_elector`` in a thread of its own, so that a slow cycle never delays a
renewal).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from healer.config import LeaderSettings
from healer.errors import ActionError
from healer.lifecycle.alert_watch import PodOwners
from healer.types import (
    ActionRecord,
    ActionStatus,
    JsonObject,
    LeaseRecord,
    Plan,
    WorkloadRef,
    WorkloadState,
)

log = structlog.get_logger("healer.leader")


class LeaseClient(Protocol):
    def get(self) -> LeaseRecord | None: ...

    def create(self, record: LeaseRecord) -> LeaseRecord: ...

    def replace(self, record: LeaseRecord) -> LeaseRecord: ...


def default_identity() -> str:
    """``<hostname>_<random>``: the pod name, made unique per process as client-go does."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """One candidate for the Lease. Thread-safe: a renewal thread and the cycle share it."""

    def __init__(
        self,
        leases: LeaseClient,
        *,
        identity: str,
        settings: LeaderSettings,
        shards: int | None = None,
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.settings = settings
        self.shards = shards
        """Written into the Lease each time this daemon writes it as holder (a shard
        Lease records the shard count); None leaves the Lease's own value alone."""
        self._lock = threading.Lock()
        self._observed: LeaseRecord | None = None
        self._observed_at: datetime | None = None
        self._renewed_at: datetime | None = None
        """When this daemon last wrote the Lease as its holder (local clock)."""
        self.last_error: str | None = None
        """Why the last attempt failed, if it did (the Kubernetes API is down, ...)."""
        self.holder: str = ""
        """The holder as last seen; this daemon's identity while it leads."""
        self._term = 0
        """How many times this daemon has become the leader (renewals do not count)."""

    # ---- the attempt every retry period ----------------------------------------------------

    def tick(self, now: datetime) -> bool:
        """Try to acquire or renew the Lease once; returns whether this daemon leads.

        Never raises for API errors: they are kept in ``last_error`` and the next tick
        tries again (the Lease lapses on its own if the API stays down).
        """
        with self._lock:
            was = self._leads(now)
            try:
                self._try_acquire_or_renew(now)
                self.last_error = None
            except ActionError as exc:
                self.last_error = str(exc)
                log.warning("lease_attempt_failed", identity=self.identity, error=str(exc))
            leads = self._leads(now)
        if leads != was:
            log.info(
                "leadership_acquired" if leads else "leadership_lost",
                identity=self.identity,
                holder=self.holder,
            )
        return leads

    def observe(self, now: datetime) -> None:
        """Read the Lease and note its version, never writing it: a shard replica at its
        share watches the shards it may claim later, so that when it may, a holder that
        stopped renewing is judged from when it stopped, not from then. Errors are kept
        in ``last_error``, as ``tick`` does."""
        with self._lock:
            try:
                current = self.leases.get()
                self.last_error = None
            except ActionError as exc:
                self.last_error = str(exc)
                return
            if current is None:
                return
            if (
                self._observed is None
                or current.resource_version != self._observed.resource_version
            ):
                self._observed, self._observed_at = current, now
            self.holder = current.holder

    def _try_acquire_or_renew(self, now: datetime) -> None:
        current = self.leases.get()
        if current is None:
            mine = LeaseRecord(self.identity, self.settings.lease_duration_s, now, now, 0)
            self._wrote(self.leases.create(self._stamped(mine)), now)
            return
        if self._observed is None or current.resource_version != self._observed.resource_version:
            self._observed, self._observed_at = current, now
        self.holder = current.holder
        if current.holder and current.holder != self.identity and not self._expired(now):
            self._renewed_at = None
            return
        if current.holder == self.identity:
            mine = replace(current, renewed=now, lease_duration_s=self.settings.lease_duration_s)
        else:
            mine = replace(
                current,
                holder=self.identity,
                acquired=now,
                renewed=now,
                lease_duration_s=self.settings.lease_duration_s,
                transitions=current.transitions + 1,
            )
        self._wrote(self.leases.replace(self._stamped(mine)), now)

    def _stamped(self, record: LeaseRecord) -> LeaseRecord:
        return record if self.shards is None else replace(record, shards=self.shards)

    def _wrote(self, record: LeaseRecord, now: datetime) -> None:
        if not self._leads(now):
            self._term += 1
        self._observed, self._observed_at, self._renewed_at = record, now, now
        self.holder = record.holder

    def _expired(self, now: datetime) -> bool:
        assert self._observed is not None and self._observed_at is not None
        duration = timedelta(seconds=self._observed.lease_duration_s)
        return self._observed_at + duration <= now

    def _leads(self, now: datetime) -> bool:
        deadline = timedelta(seconds=self.settings.renew_deadline_s)
        return self._renewed_at is not None and now - self._renewed_at < deadline

    # ---- questions the daemon asks ----------------------------------------------------------

    def is_leader(self, now: datetime) -> bool:
        """Whether this daemon renewed the Lease within the renew deadline (no API call)."""
        with self._lock:
            return self._leads(now)

    def leading_term(self, now: datetime) -> int | None:
        """Which spell of leadership this is (1, 2, ...), or None while not leading.

        A daemon that lost the Lease and won it back has a new term: another daemon may
        have acted in between, so what it remembered of the incidents is stale.
        """
        with self._lock:
            return self._term if self._leads(now) else None

    def confirm(self, now: datetime) -> str | None:
        """Re-read the Lease before a write to the cluster; None when this daemon may write.

        Otherwise the reason it may not: it has not renewed in time, the Lease names
        another holder, or someone wrote the Lease since this daemon last renewed it.
        """
        with self._lock:
            if not self._leads(now):
                return f"this daemon ({self.identity}) does not hold the lease"
            try:
                current = self.leases.get()
            except ActionError as exc:
                return f"the lease could not be read to confirm leadership: {exc}"
            assert self._observed is not None
            if current is None or current.holder != self.identity:
                self._renewed_at = None
                holder = current.holder if current else "nobody"
                return f"the lease is held by {holder or 'nobody'}, not {self.identity}"
            if current.resource_version != self._observed.resource_version:
                self._renewed_at = None
                return "the lease was written by someone else since this daemon renewed it"
            return None

    def release(self, now: datetime) -> bool:
        """Give the Lease up on a graceful stop; returns whether it was released.

        Writes an empty holder with a one-second duration, as client-go's
        ``ReleaseOnCancel`` does, so that a follower takes over at its next attempt.
        """
        with self._lock:
            if not self._leads(now) or self._observed is None:
                return False
            released = replace(self._observed, holder="", lease_duration_s=1, renewed=now)
            try:
                self.leases.replace(released)
            except ActionError as exc:
                log.warning("lease_release_failed", identity=self.identity, error=str(exc))
                return False
            self._renewed_at = None
            self.holder = ""
        log.info("leadership_released", identity=self.identity)
        return True

    def status(self, now: datetime) -> JsonObject:
        return {
            "identity": self.identity,
            "is_leader": self.is_leader(now),
            "leader": self.holder or None,
            "lease_error": self.last_error,
        }


class Ticking(Protocol):
    """What ``run_elector`` drives: a ``LeaderElector`` or the shard claims of
    ``healer.sharding``."""

    settings: LeaderSettings

    def tick(self, now: datetime) -> bool: ...


def run_elector(
    elector: Ticking,
    *,
    stop: threading.Event,
    now: Callable[[], datetime],
) -> None:
    """Tick every ``retry_period_s`` of wall time until ``stop`` is set (real time).

    The period runs from the start of one attempt to the start of the next, so slow API
    answers do not stretch it: a follower notices an expired Lease as early as it can.
    """
    while not stop.is_set():
        started = now()
        elector.tick(started)
        spent_s = (now() - started).total_seconds()
        stop.wait(max(0.0, elector.settings.retry_period_s - spent_s))


class Actuator(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...

    def already_applied(self, intent: ActionRecord) -> bool: ...


class LeaderOnlyActuator:
    """An actuator that writes to the cluster only while its daemon confirms the Lease.

    Reads pass through. A write that may not happen is not sent; its record says why
    (status failed), so the audit store shows the step as abandoned and the incident
    escalates to a person, and the daemon that now leads never repeats it.
    """

    def __init__(
        self, inner: Actuator, elector: LeaderElector, *, clock: Callable[[], datetime]
    ) -> None:
        self.inner = inner
        self.elector = elector
        self.clock = clock

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.inner.read_state(workload)

    def already_applied(self, intent: ActionRecord) -> bool:
        """A read: passes through, leader or not."""
        return self.inner.already_applied(intent)

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        """A read: passes through, leader or not; None when the inner actuator cannot
        resolve pods."""
        inner = self.inner
        return inner.owner_of_pod(namespace, pod) if isinstance(inner, PodOwners) else None

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        refused = self.elector.confirm(self.clock())
        if refused is None:
            return self.inner.apply(plan, now=now)
        return abandoned(plan, now, refused)


def abandoned(plan: Plan, now: datetime, refused: str) -> ActionRecord:
    """The record of a write not sent because this daemon may not write (``refused``
    says why): failed, so the step shows as abandoned and is never repeated."""
    log.warning("action_abandoned", workload=str(plan.workload), reason=refused)
    return ActionRecord(
        kind=plan.action,
        target=plan.workload,
        request={"action": plan.action.value, "params": dict(plan.params)},
        status=ActionStatus.FAILED,
        started=now,
        finished=now,
        error=f"not applied: {refused}",
    )
