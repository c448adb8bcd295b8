"""The NAB scoring rules on hand-made files, and agreement with the shared reference scorer.

Files are 100 rows, so the first 15 rows are the probationary period; each has one
window of 10 rows, 50..59, unless said otherwise.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from healer.detect import nab
from healer.detect.csvscore import evaluate_folder
from healer.detect.nab import PROFILES, LabelledScores, Profile

N = 100
WINDOW = (50, 59)
STANDARD, LOW_FP, LOW_FN = PROFILES


def flagged_at(*rows: int, n: int = N) -> np.ndarray:
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def one(scores: np.ndarray, windows: tuple[tuple[int, int], ...] = (WINDOW,)) -> LabelledScores:
    return LabelledScores("cat/f.csv", scores, windows)


def result(profile: Profile, *items: LabelledScores) -> nab.ProfileResult:
    (out,) = nab.evaluate(items, (profile,))
    return out


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probation_rows(100) == 15
    assert nab.probation_rows(4032) == 604
    assert nab.probation_rows(20_000) == 750


def test_ramp_is_nabs_scaled_sigmoid() -> None:
    assert nab.ramp(np.array(0.0)) == pytest.approx(0.0)
    assert nab.ramp(np.array(-1.0)) == pytest.approx(0.9866, abs=1e-4)
    assert nab.ramp(np.array(3.5)) == -1.0


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_detection_at_window_start_earns_the_tp_weight(profile: Profile) -> None:
    r = result(profile, one(flagged_at(50)))
    assert r.raw == pytest.approx(profile.tp_weight)
    assert r.normalized == pytest.approx(100.0)
    assert r.threshold == 1.0


def test_later_detection_earns_less() -> None:
    early = result(STANDARD, one(flagged_at(52))).raw
    late = result(STANDARD, one(flagged_at(58))).raw
    assert 1.0 > early > late > 0.0
    # Only the earliest flag in a window counts.
    assert result(STANDARD, one(flagged_at(52, 58))).raw == pytest.approx(early)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_no_detection_costs_the_fn_weight_and_scores_zero(profile: Profile) -> None:
    r = result(profile, one(np.zeros(N)))
    assert r.raw == pytest.approx(-profile.fn_weight)
    assert r.null == pytest.approx(-profile.fn_weight)
    assert r.normalized == pytest.approx(0.0)
    assert math.isinf(r.threshold)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_false_positive_before_any_window_costs_the_fp_weight(profile: Profile) -> None:
    scores = flagged_at(50)
    scores[30] = 1.0
    (r,) = nab.evaluate([one(scores)], (profile,))
    assert r.threshold == 1.0
    assert r.raw == pytest.approx(profile.tp_weight - profile.fp_weight)
    assert r.files[0].false_positives == 1


def test_false_positive_just_after_a_window_costs_less() -> None:
    soon = result(STANDARD, one(flagged_at(50, 61))).raw
    far = result(STANDARD, one(flagged_at(50, 99))).raw
    assert 1.0 - STANDARD.fp_weight < soon < 1.0
    assert far == pytest.approx(1.0 - STANDARD.fp_weight)


def test_flags_in_probation_do_not_count() -> None:
    r = result(STANDARD, one(flagged_at(3, 50)))
    assert r.raw == pytest.approx(1.0)


def test_threshold_sweep_picks_the_best_distinct_score() -> None:
    # A real detection at 0.6, a false positive at 0.8: flagging 0.6 and up is worth it
    # (1 - 0.11 > -1), in every profile.
    scores = np.zeros(N)
    scores[50], scores[30] = 0.6, 0.8
    for profile in PROFILES:
        r = result(profile, one(scores))
        assert r.threshold == 0.6
        assert r.raw == pytest.approx(1.0 - profile.fp_weight)


def test_too_many_false_positives_make_flagging_nothing_best() -> None:
    scores = np.zeros(N)
    scores[50] = 0.5
    scores[20:40] = 0.9  # 20 rows at -0.11 each (-2.2) outweigh the window's gain of 2.0
    assert math.isinf(result(STANDARD, one(scores)).threshold)
    # Where a miss costs 2, detecting is worth 3 and wins: -2.2 + 1 against -2.
    r = result(LOW_FN, one(scores))
    assert r.threshold == 0.5
    assert r.raw == pytest.approx(-1.2)
    assert r.normalized == pytest.approx(100.0 * 0.8 / 3.0)


def test_a_given_threshold_is_applied_as_it_is() -> None:
    # The threshold of other files: 0.9 misses this file's detection at 0.6.
    scores = np.zeros(N)
    scores[50], scores[30] = 0.6, 0.8
    (chosen,) = nab.evaluate_at([one(scores)], 0.6, (STANDARD,))
    assert chosen.raw == pytest.approx(result(STANDARD, one(scores)).raw)
    (strict,) = nab.evaluate_at([one(scores)], 0.9, (STANDARD,))
    assert strict.threshold == 0.9
    assert strict.raw == pytest.approx(-1.0)
    assert strict.files[0].missed == 1
    (loose,) = nab.evaluate_at([one(scores)], 0.7, (STANDARD,))
    assert loose.raw == pytest.approx(-1.0 - STANDARD.fp_weight)


def test_one_threshold_serves_the_whole_corpus() -> None:
    a = LabelledScores("cat/a.csv", flagged_at(50) * 0.7, (WINDOW,))
    b = LabelledScores("cat/b.csv", flagged_at(50) * 0.9, (WINDOW,))
    r = result(STANDARD, a, b)
    assert r.threshold == 0.7
    assert r.normalized == pytest.approx(100.0)
    assert [f.detected for f in r.files] == [1, 1]


def test_perfect_and_null_count_every_window() -> None:
    item = one(flagged_at(20, 70), windows=((20, 29), (70, 79)))
    r = result(LOW_FN, item)
    assert r.perfect == pytest.approx(2.0)
    assert r.null == pytest.approx(-4.0)
    assert r.normalized == pytest.approx(100.0)


def test_agrees_with_the_reference_scorer(
    tmp_path: Path, eval_data: Path, reference_scorer: Path
) -> None:
    data = eval_data
    labels = data / "labels" / "combined_windows.json"
    ours = evaluate_folder(data / "data", labels, out=tmp_path)
    reference = subprocess.run(
        [sys.executable, str(reference_scorer), str(tmp_path), "--labels", str(labels)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    theirs = {
        line.split()[0]: float(line.split()[3])
        for line in reference.splitlines()
        if line.split() and line.split()[0] in {p.name for p in PROFILES}
    }
    assert len(theirs) == 3
    for r in ours.results:
        assert r.normalized == pytest.approx(theirs[r.profile.name], abs=0.1)
