"""What an alert's incident says it was diagnosed from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healer.lifecycle.alert_watch import diagnosis
from healer.types import Alert, AlertStatus, Cause, WorkloadRef

CART = WorkloadRef("shop", "Deployment", "cart")
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def alert(annotations: dict[str, str]) -> Alert:
    labels = {"alertname": "DeploymentErrorRatioHigh", "namespace": "shop", "deployment": "cart"}
    return Alert(
        "f1", "DeploymentErrorRatioHigh", AlertStatus.FIRING, T0, None, labels, annotations
    )


@pytest.mark.parametrize(
    ("annotations", "said"),
    [
        (
            {"summary": "Deployment answers too many requests with server errors."},
            "Alertmanager alert DeploymentErrorRatioHigh firing: Deployment answers too many "
            "requests with server errors.",
        ),
        (
            {"description": "cart fails 30% of its requests"},
            "Alertmanager alert DeploymentErrorRatioHigh firing: cart fails 30% of its requests.",
        ),
        ({"summary": "  "}, "Alertmanager alert DeploymentErrorRatioHigh firing."),
        ({}, "Alertmanager alert DeploymentErrorRatioHigh firing."),
    ],
)
def test_the_diagnosis_quotes_the_alert_in_one_sentence(
    annotations: dict[str, str], said: str
) -> None:
    made = diagnosis(alert(annotations), CART)
    assert (made.cause, made.confidence, made.explanation) == (Cause.UNKNOWN, 1.0, said)
