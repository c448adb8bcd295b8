"""One training function: history in, an evaluated, saved and registered version out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from histories import PER_HOUR, WORKLOADS, Pattern, at, history

from healer.detect.combined import score_history
from healer.detect.framecsv import concat_frames, read_frame_csv, write_frame_csv
from healer.detect.train import History, LabelledWindow, train, training_rows
from healer.errors import DetectError, SeriesError
from healer.history import csv_history, sim_history
from healer.types import Feedback, Frame, Signal, Verdict

NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


def cut(frame: Frame, rows: int) -> Frame:
    return Frame(frame.timestamps[:rows], frame.workloads, frame.signals, frame.values[:, :, :rows])


@pytest.fixture(scope="module")
def leak() -> History:
    return sim_history("memory-leak", duration_s=2 * 3600)


def test_simulated_history_comes_with_its_faults_labelled(leak: History) -> None:
    assert leak.source == "sim:memory-leak"
    assert leak.frame.values.shape == (2, 7, 480)
    (window,) = leak.windows
    assert window.workload.name == "orders" and window.anomalous
    assert window.start_s == leak.frame.timestamps[0] - 15 + 1800
    assert window.end_s == leak.frame.timestamps[-1]


def test_fault_windows_stay_out_of_the_normal_rows(leak: History) -> None:
    model = train(leak, now=NOW).model
    X, blocks, confirmed = training_rows([leak], model)
    warm_rows = 60 - 1  # the long window fills after 15 minutes of 15 s rows
    faulty = int(np.sum(leak.frame.timestamps >= leak.windows[0].start_s))
    assert len(X) == 2 * (480 - warm_rows) - faulty
    assert len(np.unique(blocks)) == 3  # payments: two hours; orders: its hour before the leak
    assert len(confirmed) == 0


def test_training_evaluates_against_the_detector_in_service(leak: History) -> None:
    result = train(leak, now=NOW)
    assert result.candidate.windows == result.in_service.windows == 1
    assert result.candidate.detected == 1
    assert result.card["scores"]["evaluated_on"] == "training history"  # type: ignore[index,call-overload]
    assert result.version is None and result.card_path is None  # nothing saved without a folder


def test_saving_registers_the_next_version(leak: History, tmp_path: Path) -> None:
    first = train(leak, now=NOW, models_dir=tmp_path)
    second = train(leak, now=NOW, models_dir=tmp_path, in_service=first.model)
    assert (first.version, second.version) == ("joint-1", "joint-2")
    assert second.card_path == tmp_path / "joint-2.card.json"


def test_no_look_ahead_combined_scores_at_row_i_ignore_later_rows() -> None:
    frame = history(1.5, seed=2, patterns=(Pattern(0, PER_HOUR, 40, {Signal.CPU: 1.3}),))
    model = train(History(history(3, seed=1)), now=NOW).model
    full = score_history(frame, model)
    for i in (10, PER_HOUR - 1, PER_HOUR + 5, PER_HOUR + 39):
        np.testing.assert_array_equal(score_history(cut(frame, i + 1), model)[:, i], full[:, i])


def test_operator_feedback_is_training_data() -> None:
    batch_job = Pattern(0, 3 * PER_HOUR, 80, {Signal.CPU: 1.6})
    frame = history(6, seed=1, patterns=(batch_job,))
    start, end = at(frame, batch_job.start), at(frame, batch_job.start + batch_job.rows - 1)
    label = Feedback(
        incident_id=7,
        workload=WORKLOADS[0],
        verdict=Verdict.FALSE_POSITIVE,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(end, UTC),
        cause=None,
        right_action=None,
        by="ops",
        at=NOW,
    )
    elsewhere = Feedback(
        **{**label.__dict__, "incident_id": 8, "window_start": NOW, "window_end": NOW}
    )
    result = train(History(frame), now=NOW, feedback=[label, elsewhere])
    assert result.card["training"]["confirmed_normal_rows"] == 80  # type: ignore[index,call-overload]
    assert result.unmatched_feedback == (8,)
    plain = train(History(frame), now=NOW).model
    rows = np.isin(frame.timestamps, frame.timestamps[batch_job.start + 4 : batch_job.start + 80])
    replay_after = score_history(frame, result.model)[0, rows]
    replay_before = score_history(frame, plain)[0, rows]
    assert np.median(replay_before) >= 0.95  # the streaming baselines flag the job
    assert replay_after.max() < 0.95  # quiet now: no finding on the accepted pattern


def test_a_true_positive_window_is_kept_out_of_the_normal_rows() -> None:
    frame = history(2, seed=1)
    model = train(History(frame), now=NOW).model
    everything, _, _ = training_rows([History(frame)], model)
    bad = LabelledWindow(WORKLOADS[0], at(frame, 100), at(frame, 199), anomalous=True)
    fewer, _, _ = training_rows([History(frame, (bad,))], model)
    assert len(everything) - len(fewer) == 100


def test_nothing_normal_to_train_on_is_an_error() -> None:
    frame = history(0.2)
    with pytest.raises(DetectError, match="no normal history"):
        train(History(frame), now=NOW)


def test_history_csv_round_trip(tmp_path: Path) -> None:
    frame = history(0.5, seed=3)
    frame.values[1, 2, 5] = np.nan
    write_frame_csv(tmp_path / "h.csv", frame)
    back = read_frame_csv(tmp_path / "h.csv")
    assert back.workloads == frame.workloads and back.signals == frame.signals
    np.testing.assert_array_equal(back.timestamps, frame.timestamps)
    np.testing.assert_array_equal(back.values, frame.values)
    joined = csv_history([tmp_path / "h.csv"])
    assert joined.frame.values.shape == frame.values.shape


def test_frames_join_over_workloads_and_time() -> None:
    a = history(0.5, seed=1)
    b = Frame(a.timestamps + 1800, a.workloads[:2], a.signals, a.values[:2])
    joined = concat_frames([a, b])
    assert joined.values.shape == (4, 7, 2 * len(a.timestamps))
    assert np.isnan(joined.values[3, :, -1]).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "h.csv: empty file"),
        (
            "timestamp,namespace,workload,cpu\n1,shop,a,x\n",
            "h.csv: line 2, column 'cpu': 'x' is not a number",
        ),
        (
            "timestamp,namespace,workload,cpu\n2,shop,a,1\n1,shop,a,1\n",
            "h.csv: line 3, column 'timestamp': '1' is earlier than the previous row of shop/a",
        ),
        (
            "timestamp,namespace,workload,cpu\n2,shop,a,1\n2,shop,a,1\n",
            "h.csv: line 3, column 'timestamp': '2' repeats the previous row of shop/a",
        ),
        ("timestamp,namespace,workload,disk\n1,shop,a,1\n", "h.csv: line 1: unknown column 'disk'"),
        ("timestamp,namespace,workload,cpu\nyesterday,shop,a,1\n", "line 2, column 'timestamp'"),
        (
            "timestamp,namespace,workload,cpu\n1,shop,a\n",
            "h.csv: line 2: expected 4 columns, got 3",
        ),
    ],
)
def test_bad_history_csv_names_file_line_and_column(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "h.csv"
    path.write_text(text)
    with pytest.raises(SeriesError, match=message.replace("(", r"\(")):
        read_frame_csv(path)
