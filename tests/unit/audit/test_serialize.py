"""The JSON form of the loop's types: generic writing, checked reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from healer.audit import serialize
from healer.errors import StoreError
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
WL = WorkloadRef("shop", "Deployment", "cart")


def test_to_json_writes_plain_json() -> None:
    deviation = SignalDeviation(Signal.CPU, np.float64(2.5), 1.0, 3.0, Direction.UP)
    data = serialize.to_json_object(Finding(WL, T0, 0.9, (deviation,), T0, "m-1"))
    assert data == {
        "workload": {"namespace": "shop", "kind": "Deployment", "name": "cart"},
        "at": "2024-05-01T12:00:00.123456Z",
        "score": 0.9,
        "signals": [
            {"signal": "cpu", "value": 2.5, "baseline": 1.0, "deviation": 3.0, "direction": "up"}
        ],
        "onset": "2024-05-01T12:00:00.123456Z",
        "model_version": "m-1",
    }
    signal = data["signals"][0]  # type: ignore[index]  # known shape, checked above
    assert type(signal["value"]) is float  # type: ignore[call-overload,index]
    assert type(signal["signal"]) is str  # type: ignore[call-overload,index]


def test_times_are_written_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert serialize.format_time(T0.astimezone(tokyo)) == "2024-05-01T12:00:00.123456Z"
    assert serialize.parse_time("2024-05-01T21:00:00+09:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_naive_times_and_unknown_types_are_bugs() -> None:
    with pytest.raises(ValueError, match="naive"):
        serialize.to_json(datetime(2024, 5, 1))
    with pytest.raises(TypeError, match="no JSON form for set"):
        serialize.to_json({1, 2})


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (
            Finding(WL, T0, 1.0, (SignalDeviation(Signal.MEMORY, 0.9, 0.4, 5.0, Direction.UP),),
                    T0 - timedelta(minutes=3), "m-1"),
            serialize.finding_from_json,
        ),
        (Diagnosis(WL, Cause.OVERLOAD, 0.7, "CPU at 3x requests."), serialize.diagnosis_from_json),
        (
            Plan(WL, "scale", ActionKind.SCALE, {"replicas": 4, "nested": {"a": [1, None]}},
                 Mode.APPROVAL, (GuardResult("rate", False, "10 in 1 h"),), "overload", 300.0),
            serialize.plan_from_json,
        ),
        (
            ActionRecord(ActionKind.SCALE, WL, {"verb": "PATCH"}, ActionStatus.FAILED, T0, T0,
                         error="409 Conflict"),
            serialize.action_from_json,
        ),
        (Outcome(OutcomeKind.ESCALATED, "still anomalous", T0), serialize.outcome_from_json),
    ],
)  # fmt: skip
def test_round_trip(value: object, read: object) -> None:
    assert callable(read)
    assert read(serialize.to_json_object(value)) == value


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("cause", "gremlins", "not a Cause"),
        ("confidence", "high", "expected a number"),
        ("confidence", True, "expected a number"),
        ("workload", None, "expected an object"),
        ("explanation", 3, "expected a string"),
    ],
)
def test_damaged_data_raises_store_error(field: str, bad: object, message: str) -> None:
    data = serialize.to_json_object(Diagnosis(WL, Cause.OVERLOAD, 0.7, "x"))
    data[field] = bad  # type: ignore[assignment]  # deliberately damaged
    with pytest.raises(StoreError, match=message):
        serialize.diagnosis_from_json(data)


def test_damaged_time_raises_store_error() -> None:
    data = serialize.to_json_object(Outcome(OutcomeKind.HEALED, "ok", T0))
    data["at"] = "yesterday"
    with pytest.raises(StoreError, match="expected an ISO 8601 time"):
        serialize.outcome_from_json(data)
