"""`healer score-csv` and `healer eval` from the command line, and their answers to bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEADER = "timestamp,value\n"


def healer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(n: int, start_minute: int = 0) -> str:
    return "".join(
        f"2014-04-01 {(start_minute + i) // 60:02d}:{(start_minute + i) % 60:02d}:00,{i % 7}\n"
        for i in range(n)
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_score_csv_writes_one_scored_row_per_input_row(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(HEADER + rows(300))
    result = healer("score-csv", str(src), str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert out[0] == "timestamp,value,anomaly_score"
    assert [line.rsplit(",", 1)[0] for line in out[1:]] == (rows(300)).splitlines()


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("", ("empty file",)),
        ("time,value\n2014-04-01 00:00:00,1\n", ("line 1", "'timestamp'")),
        ("timestamp,val\n2014-04-01 00:00:00,1\n", ("line 1", "'value'")),
        (HEADER, ("no data rows",)),
        (HEADER + rows(3) + "2014-04-01 00:03:00,abc\n", ("line 5", "'value'", "'abc'")),
        (HEADER + rows(3) + "2014-04-01 00:04:00,nan\n", ("line 5", "not finite")),
        (HEADER + rows(2) + "yesterday,1\n", ("line 4", "'timestamp'", "'yesterday'")),
        (HEADER + rows(2) + "2014-04-01 00:02:00\n", ("line 4", "columns")),
    ],
    ids=[
        "empty",
        "no-timestamp",
        "no-value",
        "header-only",
        "not-a-number",
        "not-finite",
        "bad-timestamp",
        "short-row",
    ],
)
def test_score_csv_bad_input(tmp_path: Path, content: str, needles: tuple[str, ...]) -> None:
    src = tmp_path / "in.csv"
    src.write_text(content)
    result = healer("score-csv", str(src), str(tmp_path / "out.csv"))
    assert_one_line_error(result, str(src), *needles)
    assert not (tmp_path / "out.csv").exists()


def test_score_csv_missing_file(tmp_path: Path) -> None:
    result = healer("score-csv", str(tmp_path / "nope.csv"), str(tmp_path / "out.csv"))
    assert_one_line_error(result, "nope.csv", "cannot read")


def test_score_csv_unknown_detector(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(HEADER + rows(10))
    result = healer("score-csv", str(src), str(tmp_path / "o.csv"), "--detector", "magic")
    assert_one_line_error(result, "unknown detector 'magic'", "discord")


def test_eval_prints_the_three_profiles_and_a_table(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.csv").write_text(HEADER + rows(400))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"cat/a.csv": [["2014-04-01 05:00:00", "2014-04-01 05:19:00"]]}))
    result = healer(
        "eval", str(tmp_path / "data"), "--labels", str(labels), "--out", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "cat/a.csv"):
        assert name in result.stdout
    assert (tmp_path / "out" / "cat" / "a.csv").is_file()


def test_eval_window_off_the_rows(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.csv").write_text(HEADER + rows(100))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"cat/a.csv": [["2020-01-01 00:00:00", "2020-01-02 00:00:00"]]}))
    result = healer("eval", str(tmp_path), "--labels", str(labels))
    assert_one_line_error(result, "labels.json", "does not match a row")


def test_score_csv_repeated_timestamps_warn_or_with_strict_fail(tmp_path: Path) -> None:
    # The hour a daylight-saving change skips, stamped 03:00 twelve times, as NAB's
    # real series have it: scored row for row with a one-line warning, or refused.
    before = [f"2014-03-09 01:{m:02d}:00,{m % 7}\n" for m in range(0, 60, 5)]
    skipped = [f"2014-03-09 03:00:00,{m % 5}\n" for m in range(12)]
    src = tmp_path / "in.csv"
    src.write_text(HEADER + "".join(before + skipped) + "2014-03-09 03:05:00,1\n")
    result = healer("score-csv", str(src), str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1
    assert str(src) in warning[0] and "line 15" in warning[0] and "11 repeated" in warning[0]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 12 + 12 + 1

    strict = healer("score-csv", str(src), str(tmp_path / "o2.csv"), "--strict-timestamps")
    assert_one_line_error(strict, str(src), "line 15", "'2014-03-09 03:00:00'", "repeats")
    assert not (tmp_path / "o2.csv").exists()


def test_score_csv_a_clock_set_back_warns_or_with_strict_fails(tmp_path: Path) -> None:
    # A daylight-saving change: the hour 01:00-01:55 comes twice, the second time
    # stepping back from 01:55 to 01:00. Every row is scored in file order.
    hour = [f"2014-11-02 01:{m:02d}:00,{m % 7}\n" for m in range(0, 60, 5)]
    after = [f"2014-11-02 02:{m:02d}:00,{m % 3}\n" for m in range(0, 60, 5)]
    src = tmp_path / "in.csv"
    src.write_text(HEADER + "".join(hour + hour + after))
    result = healer("score-csv", str(src), str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1
    assert str(src) in warning[0] and "line 14" in warning[0]
    assert "'2014-11-02 01:00:00' is earlier than" in warning[0] and "(1 rows" in warning[0]
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in out[1:]] == "".join(hour + hour + after).splitlines()

    strict = healer("score-csv", str(src), str(tmp_path / "o2.csv"), "--strict-timestamps")
    assert_one_line_error(strict, str(src), "line 14", "'2014-11-02 01:00:00'", "earlier than")
    assert not (tmp_path / "o2.csv").exists()


def test_score_csv_repeats_and_a_step_back_share_one_warning_line(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(HEADER + rows(5) + rows(1) + rows(1) + rows(3, start_minute=5))
    result = healer("score-csv", str(src), str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1
    assert "line 7" in warning[0] and "earlier than" in warning[0]
    assert "line 8" in warning[0] and "repeats" in warning[0]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 10
