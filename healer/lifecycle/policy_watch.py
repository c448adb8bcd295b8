"""The policy watch: ``HealingPolicy`` and ``ClusterHealingPolicy`` objects, kept current
beside the cycle, and their status written back.

Like any controller's informer: list each kind, then watch it from the list's
``resourceVersion``; a watch the server ends is resumed from the last version seen, a
410 Gone (the version fell out of the server's watch cache) lists again, and any other
error reconnects with a doubling wait (tenacity, at most ``backoff_max_s``). Each kind
runs in a daemon thread of its own, as the Lease does (``leader.run_elector``), so a
slow API server never delays a cycle; the cycle reads the ``PolicyBook``'s current
policies when it plans, so a change takes effect on the next cycle.

A third thread writes each policy's status through the status subresource, while this
replica leads: conditions ``Ready`` and ``Invalid`` (with the reason of a policy that
contradicts itself, which is ignored while the others still apply), the
``observedGeneration`` judged and ``matchedWorkloads``. It writes only what changed, after
a policy changed and every ``status_interval_s`` (workloads come and go).

The CRDs not installed (404 on the group): healer runs on its settings alone, says so
once in the log, and looks again every ``missing_retry_s``.

Decisions: kopf was weighed and not used. It runs its own asyncio loop and wants the
process (``kopf.run``, or an embedded operator in a thread with its own loop), keeps its
progress in annotations on the objects, and coordinates replicas through its own
peering objects, beside the Lease healer's leader election already holds; healer needs
none of its handler machinery to read a few objects, only a list-watch and a status
write, which the official client does in the daemon's own threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_when_event_set,
    wait_exponential,
)

from healer.decide.policies import Policy, Rejected, parse
from healer.errors import PoliciesMissing, PolicyWatchExpired, TransientActionError
from healer.types import JsonObject, JsonValue, WorkloadRef

log = structlog.get_logger("healer.policies")

PLURALS = ("healingpolicies", "clusterhealingpolicies")
WATCH_TIMEOUT_S = 300
"""The server ends a watch after this; the next resumes from the last version seen."""


class PolicyClient(Protocol):
    """The requests of the watch (``act.policy_api.KubePolicyApi``)."""

    def list_all(self, plural: str) -> tuple[tuple[JsonObject, ...], str]: ...

    def watch(
        self, plural: str, resource_version: str, *, timeout_s: int
    ) -> Iterator[tuple[str, JsonObject]]: ...

    def write_status(self, plural: str, obj: JsonObject, status: JsonObject) -> None: ...

    def workload_labels(self) -> list[tuple[WorkloadRef, Mapping[str, str]]]: ...


@dataclass(frozen=True)
class Judged:
    """One object as last seen, and what healer made of it."""

    plural: str
    obj: JsonObject
    verdict: Policy | Rejected


class PolicyBook:
    """The policy objects as last seen; shared by the watch threads and the cycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], Judged] = {}
        self._policies: tuple[Policy, ...] = ()
        self._missing: set[str] = set()
        self._known: set[str] = set()
        self._synced = threading.Event()
        self.changed = threading.Event()
        """Set when a policy's spec came, went or changed: its status is due."""

    def current(self) -> tuple[Policy, ...]:
        """The valid policies, for one cycle (a snapshot: the watch may move on)."""
        return self._policies

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait until every kind was listed once (or found missing), as a controller
        waits for its caches before it acts; False after ``timeout_s``."""
        return self._synced.wait(timeout_s)

    def _known_now(self, plural: str) -> None:
        self._known.add(plural)
        if self._known >= set(PLURALS):
            self._synced.set()

    def judged(self) -> list[Judged]:
        with self._lock:
            return list(self._seen.values())

    def replace_all(self, plural: str, items: Sequence[JsonObject]) -> None:
        """What a list returned is all there is of ``plural``."""
        with self._lock:
            self._missing.discard(plural)
            self._known_now(plural)
            for key in [k for k in self._seen if k[0] == plural]:
                del self._seen[key]
            for obj in items:
                self._seen[_key(plural, obj)] = Judged(plural, obj, parse(obj))
            self._publish()

    def apply(self, plural: str, change: str, obj: JsonObject) -> None:
        """One watch event."""
        key = _key(plural, obj)
        with self._lock:
            before = self._seen.pop(key, None)
            if change != "DELETED":
                self._seen[key] = Judged(plural, obj, parse(obj))
            if before is None or change == "DELETED" or _generation(before.obj) != _generation(obj):
                self._publish()

    def missing(self, plural: str) -> bool:
        """``plural`` is not served: forget its objects; True the first time."""
        with self._lock:
            first = plural not in self._missing
            self._missing.add(plural)
            self._known_now(plural)
            for key in [k for k in self._seen if k[0] == plural]:
                del self._seen[key]
            self._publish()
            return first

    def _publish(self) -> None:
        self._policies = tuple(
            j.verdict for _, j in sorted(self._seen.items()) if isinstance(j.verdict, Policy)
        )
        self.changed.set()


def _key(plural: str, obj: JsonObject) -> tuple[str, str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return plural, str(meta.get("namespace") or ""), str(meta.get("name"))


def _generation(obj: JsonObject) -> object:
    meta = obj.get("metadata")
    return meta.get("generation") if isinstance(meta, dict) else None


# ---- the watch -----------------------------------------------------------------------


def watch_policies(
    api: PolicyClient,
    book: PolicyBook,
    *,
    plural: str,
    stop: threading.Event,
    backoff_max_s: float = 30.0,
    missing_retry_s: float = 60.0,
    timeout_s: int = WATCH_TIMEOUT_S,
) -> None:
    """List and watch ``plural`` into ``book`` until ``stop`` is set (a thread's target)."""
    retrying = Retrying(
        retry=retry_if_exception(_reconnects),
        wait=wait_exponential(multiplier=0.5, max=backoff_max_s),
        stop=stop_when_event_set(stop),
        sleep=lambda wait_s: _pause(stop, wait_s),
        before_sleep=_log_retry(plural),
        reraise=True,
    )
    while not stop.is_set():
        try:
            for attempt in retrying:
                with attempt:
                    _session(api, book, plural=plural, stop=stop, timeout_s=timeout_s)
        except PoliciesMissing:
            if book.missing(plural):
                log.info("policies_not_installed", kind=f"{plural}.healer.io", using="settings")
            stop.wait(missing_retry_s)
        except TransientActionError as exc:  # stopped while waiting to retry
            log.info("policy_watch_stopped", kind=plural, error=str(exc))


def _pause(stop: threading.Event, wait_s: float) -> None:
    stop.wait(wait_s)


def _session(
    api: PolicyClient, book: PolicyBook, *, plural: str, stop: threading.Event, timeout_s: int
) -> None:
    """One list, then watches from its version until a 410 or ``stop``."""
    items, version = api.list_all(plural)
    book.replace_all(plural, items)
    log.info("policies_listed", kind=plural, count=len(items))
    try:
        while not stop.is_set():
            for change, obj in api.watch(plural, version, timeout_s=timeout_s):
                book.apply(plural, change, obj)
                meta = obj.get("metadata")
                if isinstance(meta, dict) and meta.get("resourceVersion"):
                    version = str(meta["resourceVersion"])
                if stop.is_set():
                    return
    except PolicyWatchExpired:
        log.info("policy_watch_expired", kind=plural, version=version)  # list again


def _reconnects(error: BaseException) -> bool:
    """An error worth reconnecting for at once (with backoff): not the CRDs missing,
    which is looked at again every ``missing_retry_s``."""
    return isinstance(error, TransientActionError) and not isinstance(error, PoliciesMissing)


def _log_retry(plural: str) -> Callable[[RetryCallState], None]:
    def say(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else None
        log.warning("policy_watch_failed", kind=plural, error=str(error), retry_in_s=wait_s)

    return say


# ---- status --------------------------------------------------------------------------


def status_of(
    judged: Judged,
    workloads: Sequence[tuple[WorkloadRef, Mapping[str, str]]],
    now: datetime,
) -> JsonObject | None:
    """The status ``judged.obj`` should have; None when it has it already."""
    meta = judged.obj.get("metadata")
    given = meta.get("generation") if isinstance(meta, dict) else None
    generation = given if isinstance(given, int) else None
    verdict = judged.verdict
    if isinstance(verdict, Policy):
        matched = sum(1 for ref, labels in workloads if verdict.matches(ref, labels))
        ready = ("True", "Accepted", f"applies to {matched} workloads")
        invalid = ("False", "Valid", "the policy is consistent")
    else:
        matched = 0
        ready = ("False", verdict.reason, f"ignored: {verdict.message}")
        invalid = ("True", verdict.reason, verdict.message)
    old = judged.obj.get("status")
    old = old if isinstance(old, dict) else {}
    conditions: list[JsonValue] = [
        _condition(old, "Ready", ready, generation, now),
        _condition(old, "Invalid", invalid, generation, now),
    ]
    status: JsonObject = {
        "observedGeneration": generation,
        "matchedWorkloads": matched,
        "conditions": conditions,
    }
    return None if status == {k: old.get(k) for k in status} else status


def _condition(
    old: JsonObject, kind: str, said: tuple[str, str, str], generation: int | None, now: datetime
) -> JsonObject:
    status, reason, message = said
    kept = old.get("conditions")
    before = next(
        (
            c
            for c in (kept if isinstance(kept, list) else [])
            if isinstance(c, dict) and c.get("type") == kind
        ),
        None,
    )
    since = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if before is not None and before.get("status") == status and before.get("lastTransitionTime"):
        since = str(before["lastTransitionTime"])
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def write_statuses(api: PolicyClient, book: PolicyBook, *, now: datetime) -> int:
    """Write every status that changed; how many were written."""
    judged = book.judged()
    if not judged:
        return 0
    workloads = api.workload_labels()
    written = 0
    for one in judged:
        status = status_of(one, workloads, now)
        if status is not None:
            api.write_status(one.plural, one.obj, status)
            written += 1
    return written


def keep_statuses(
    api: PolicyClient,
    book: PolicyBook,
    *,
    stop: threading.Event,
    leading: Callable[[], bool],
    now: Callable[[], datetime],
    interval_s: float = 30.0,
) -> None:
    """Write statuses after each change and every ``interval_s``, while leading (a
    thread's target); an error is logged and tried again at the next turn."""
    while not stop.is_set():
        book.changed.wait(interval_s)
        book.changed.clear()
        if stop.is_set() or not leading():
            continue
        try:
            written = write_statuses(api, book, now=now())
        except TransientActionError as exc:
            log.warning("policy_status_failed", error=str(exc))
            continue
        if written:
            log.info("policy_status_written", policies=written)


def start(
    api: PolicyClient,
    book: PolicyBook,
    *,
    stop: threading.Event,
    leading: Callable[[], bool],
    now: Callable[[], datetime],
    status_interval_s: float = 30.0,
    missing_retry_s: float = 60.0,
) -> list[threading.Thread]:
    """The watch threads (one per kind) and the status thread, started; daemon threads,
    so a watch blocked on the server never holds the process at exit."""
    threads = [
        threading.Thread(
            target=watch_policies,
            kwargs={
                "api": api,
                "book": book,
                "plural": plural,
                "stop": stop,
                "missing_retry_s": missing_retry_s,
            },
            name=f"watch-{plural}",
            daemon=True,
        )
        for plural in PLURALS
    ]
    threads.append(
        threading.Thread(
            target=keep_statuses,
            kwargs={
                "api": api,
                "book": book,
                "stop": stop,
                "leading": leading,
                "now": now,
                "interval_s": status_interval_s,
            },
            name="policy-status",
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    return threads
