"""The JSON form of the loop's value types, as stored in each incident step.

One generic converter writes any of ``healer.types``' frozen dataclasses as JSON: fields
by ``dataclasses.fields``, enums as their value, datetimes as ISO 8601 in UTC with a
``Z`` suffix, tuples as lists, mappings as objects. Writing is generic so that a new
field is stored without touching this module.

Reading back is explicit, one function per type, because JSON has lost the types
(a list is a tuple or a list, a string an enum or a datetime) and because stored data
may be old or damaged: every accessor checks the JSON type it expects and raises
``StoreError`` naming the field, rather than handing a wrong value to the daemon.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from healer.errors import StoreError
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    GuardResult,
    JsonObject,
    JsonValue,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

E = TypeVar("E", bound=enum.Enum)


def to_json(value: object) -> JsonValue:
    """Convert a value built from ``healer.types`` into plain JSON data.

    Raises TypeError for a value with no JSON form and ValueError for a naive datetime:
    both are bugs in the caller, not store failures.
    """
    if isinstance(value, enum.Enum):  # before str: StrEnum members are str
        return to_json(value.value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return float(value)
    if isinstance(value, datetime):
        return format_time(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


def to_json_object(value: object) -> JsonObject:
    """``to_json`` for a dataclass or mapping, whose JSON form is an object."""
    data = to_json(value)
    if not isinstance(data, dict):
        raise TypeError(f"{type(value).__name__} is not stored as a JSON object")
    return data


def format_time(at: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix; microseconds kept so that times round-trip."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: healer times are timezone-aware")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The inverse of ``format_time``; any offset is accepted and normalised to UTC."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def workload_from_json(data: JsonObject) -> WorkloadRef:
    return WorkloadRef(
        namespace=_str(data, "namespace"), kind=_str(data, "kind"), name=_str(data, "name")
    )


def finding_from_json(data: JsonObject) -> Finding:
    return Finding(
        workload=workload_from_json(_obj(data, "workload")),
        at=_time(data, "at"),
        score=_float(data, "score"),
        signals=tuple(
            _deviation_from_json(_as_obj(d, "signals[]")) for d in _list(data, "signals")
        ),
        onset=_time(data, "onset"),
        model_version=_str(data, "model_version"),
    )


def _deviation_from_json(data: JsonObject) -> SignalDeviation:
    return SignalDeviation(
        signal=_enum(Signal, data, "signal"),
        value=_float(data, "value"),
        baseline=_float(data, "baseline"),
        deviation=_float(data, "deviation"),
        direction=_enum(Direction, data, "direction"),
    )


def diagnosis_from_json(data: JsonObject) -> Diagnosis:
    return Diagnosis(
        workload=workload_from_json(_obj(data, "workload")),
        cause=_enum(Cause, data, "cause"),
        confidence=_float(data, "confidence"),
        explanation=_str(data, "explanation"),
        pod=_optional_str(data, "pod"),
    )


def _optional_str(data: JsonObject, key: str) -> str | None:
    """A string field that older records do not have."""
    value = data.get(key)
    return value if isinstance(value, str) else None


def plan_from_json(data: JsonObject) -> Plan:
    guards = tuple(
        _guard_from_json(_as_obj(g, "guard_results[]")) for g in _list(data, "guard_results")
    )
    return Plan(
        workload=workload_from_json(_obj(data, "workload")),
        playbook=_str(data, "playbook"),
        action=_enum(ActionKind, data, "action"),
        params=_obj(data, "params"),
        mode=_enum(Mode, data, "mode"),
        guard_results=guards,
        reason=_str(data, "reason"),
        verify_within_s=_float(data, "verify_within_s"),
    )


def _guard_from_json(data: JsonObject) -> GuardResult:
    passed = data.get("passed")
    if not isinstance(passed, bool):
        raise StoreError(f"stored field 'passed' is {passed!r}, expected a boolean")
    return GuardResult(guard=_str(data, "guard"), passed=passed, detail=_str(data, "detail"))


def action_from_json(data: JsonObject) -> ActionRecord:
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise StoreError(f"stored field 'error' is {error!r}, expected a string or null")
    return ActionRecord(
        kind=_enum(ActionKind, data, "kind"),
        target=workload_from_json(_obj(data, "target")),
        request=_obj(data, "request"),
        status=_enum(ActionStatus, data, "status"),
        started=_time(data, "started"),
        finished=_time(data, "finished"),
        error=error,
    )


def outcome_from_json(data: JsonObject) -> Outcome:
    return Outcome(
        kind=_enum(OutcomeKind, data, "kind"),
        evidence=_str(data, "evidence"),
        at=_time(data, "at"),
    )


def _str(data: JsonObject, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise StoreError(f"stored field {key!r} is {value!r}, expected a string")
    return value


def _float(data: JsonObject, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"stored field {key!r} is {value!r}, expected a number")
    return float(value)


def _time(data: JsonObject, key: str) -> datetime:
    text = _str(data, key)
    try:
        return parse_time(text)
    except ValueError as exc:
        raise StoreError(f"stored field {key!r} is {text!r}, expected an ISO 8601 time") from exc


def _enum(cls: type[E], data: JsonObject, key: str) -> E:
    text = _str(data, key)
    try:
        return cls(text)
    except ValueError as exc:
        raise StoreError(f"stored field {key!r} is {text!r}, not a {cls.__name__}") from exc


def _obj(data: JsonObject, key: str) -> JsonObject:
    return _as_obj(data.get(key), key)


def _as_obj(value: JsonValue, key: str) -> JsonObject:
    if not isinstance(value, dict):
        raise StoreError(f"stored field {key!r} is {value!r}, expected an object")
    return value


def _list(data: JsonObject, key: str) -> list[JsonValue]:
    value = data.get(key)
    if not isinstance(value, list):
        raise StoreError(f"stored field {key!r} is {value!r}, expected a list")
    return value


SERIES_POINTS = 120
"""Samples kept per signal around a finding: an hour at 30 s, enough to see the shape
of the anomaly on the review page, a few kilobytes per incident."""


def series_json(frame: Frame, finding: Finding, *, points: int = SERIES_POINTS) -> JsonObject:
    """The deviating signals of ``finding``'s workload over the frame's last ``points``
    samples (every k-th sample when the frame holds more): ``{"t": [...], signal: [...]}``,
    UNIX seconds and values, null for gaps."""
    signals = [d.signal for d in finding.signals]
    return signals_json(frame, finding.workload, signals, points=points)


def signals_json(
    frame: Frame, workload: WorkloadRef, signals: Sequence[str], *, points: int = SERIES_POINTS
) -> JsonObject:
    """``signals`` of ``workload`` over the frame's last ``points`` samples, in the form
    of ``series_json``: an outcome keeps the same signals as its finding, so the page
    can draw them from before the onset to after the outcome."""
    if workload not in frame.workload_rows or not len(frame.timestamps):
        return {}
    w = frame.workload_rows[workload]
    count = len(frame.timestamps)
    stride = max(1, -(-count // points))  # ceil division
    picked = slice((count - 1) % stride, None, stride)  # always ends on the newest sample
    out: JsonObject = {"t": [float(t) for t in frame.timestamps[picked]]}
    for signal in signals:
        if signal in frame.signals:
            row = frame.values[w, frame.signals.index(signal), picked]
            out[str(signal)] = [None if math.isnan(v) else float(v) for v in row]
    return out
