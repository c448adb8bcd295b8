"""Ground-truth labels from scenarios: which cause an anomaly had, and when."""

from __future__ import annotations

from datetime import UTC, datetime

from healer.diagnose.features import FEATURES
from healer.groundtruth import cause_at, examples_from_store
from healer.sim.scenario import load_scenario
from healer.types import Cause, Feedback, Verdict, WorkloadRef


def test_the_fault_active_on_the_workload_is_the_cause() -> None:
    default = load_scenario("default")
    assert cause_at(default, "shop/checkout", 1100) is Cause.UNKNOWN  # before the leak
    assert cause_at(default, "shop/checkout", 1300) is Cause.MEMORY_LEAK
    assert cause_at(default, "shop/search", 2800) is Cause.OVERLOAD
    assert cause_at(default, "shop/cart", 4000) is Cause.BAD_RELEASE
    assert cause_at(default, "shop/catalog", 2200) is Cause.UNKNOWN  # a good release
    assert cause_at(default, "web/storefront", 3000) is Cause.UNKNOWN  # the daily peak


def test_crash_loops_and_cpu_hogs_are_labelled() -> None:
    assert cause_at(load_scenario("crash-loop"), "shop/profile", 2000) is Cause.CRASH_LOOP
    assert cause_at(load_scenario("cpu-hog"), "shop/recommend", 2000) is Cause.CPU_HOG


class Labels:
    """Training labels as training reads them (``healer.audit.roles.TrainingLabels``)."""

    def __init__(self, feedback: list[Feedback], rows: dict[int, dict[str, float]]) -> None:
        self._feedback, self._rows = feedback, rows

    def feedback(self, since: datetime | None = None) -> list[Feedback]:
        return self._feedback

    def diagnosis_features(self) -> dict[int, dict[str, float]]:
        return self._rows


def label(incident_id: int, verdict: Verdict, cause: Cause | None, t: int) -> Feedback:
    at = datetime(2024, 5, 1, 12, t, tzinfo=UTC)
    workload = WorkloadRef("shop", "Deployment", "cart")
    return Feedback(incident_id, workload, verdict, at, at, cause, None, "olga", at)


def test_examples_from_labels_take_each_incidents_latest_label_and_its_kept_row() -> None:
    row = {name: float(i) for i, name in enumerate(FEATURES)}
    labels = Labels(
        [
            label(1, Verdict.TRUE_POSITIVE, Cause.OVERLOAD, 1),
            label(1, Verdict.TRUE_POSITIVE, Cause.MEMORY_LEAK, 2),  # the later one wins
            label(2, Verdict.FALSE_POSITIVE, None, 3),
            label(3, Verdict.TRUE_POSITIVE, Cause.OVERLOAD, 4),  # no row kept: skipped
        ],
        {1: row, 2: row, 4: row},
    )

    examples = examples_from_store(labels)

    assert [(e.source, e.cause) for e in examples] == [
        ("feedback:1", Cause.MEMORY_LEAK),
        ("feedback:2", Cause.UNKNOWN),
    ]
    assert examples[0].row.tolist() == [float(i) for i in range(len(FEATURES))]
