"""Onsets: when each workload's anomalous run began, as workloads come, go and move."""

from __future__ import annotations

import numpy as np

from healer.config import DetectorSettings
from healer.detect.shaped import Onsets
from healer.types import WorkloadRef

A, B, C = (WorkloadRef("shop", "Deployment", name) for name in ("a", "b", "c"))
ALL = np.ones(3, dtype=bool)


def mask(*flags: int) -> np.ndarray:
    return np.array(flags, dtype=bool)


def test_a_run_begins_at_its_first_hot_time_and_ends_when_quiet() -> None:
    onsets = Onsets(DetectorSettings())
    onsets.track((A, B, C), mask(0, 1, 0), ALL, 100.0)
    onsets.track((A, B, C), mask(0, 1, 1), ALL, 130.0)
    assert onsets.onset_ == {B: 100.0, C: 130.0}
    onsets.track((A, B, C), mask(0, 0, 1), ALL, 160.0)
    assert onsets.onset_ == {C: 130.0}


def test_a_workload_without_fresh_data_keeps_its_run() -> None:
    onsets = Onsets(DetectorSettings())
    onsets.track((A, B, C), mask(1, 0, 0), ALL, 100.0)
    onsets.track((A, B, C), mask(0, 0, 0), mask(0, 1, 1), 130.0)
    assert onsets.onset_ == {A: 100.0}


def test_a_run_follows_its_workload_to_another_place_in_the_frame() -> None:
    onsets = Onsets(DetectorSettings())
    onsets.track((A, B, C), mask(0, 1, 0), ALL, 100.0)
    # B moved (a workload before it left): still hot, its run goes on; then quiet, it ends.
    onsets.track((B, C), mask(1, 0), mask(1, 1), 130.0)
    assert onsets.onset_ == {B: 100.0}
    onsets.track((C, A, B), mask(0, 0, 0), ALL, 160.0)
    assert onsets.onset_ == {}


def test_a_run_of_a_workload_gone_from_the_frame_is_kept() -> None:
    onsets = Onsets(DetectorSettings())
    onsets.track((A, B, C), mask(0, 0, 1), ALL, 100.0)
    onsets.track((A, B), mask(0, 0), mask(1, 1), 130.0)
    assert onsets.onset_ == {C: 100.0}
