"""The benchmark harness's pure helpers: rates, ratios, percentiles, bounded loops, the table, the report."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

import harness
from harness import Budget, Row


def test_rate_is_operations_per_second_and_none_without_time() -> None:
    assert harness.rate(500, 2.0) == 250.0
    assert harness.rate(500, 0.0) is None
    assert harness.Rate(30, 0.5).per_second == 60.0


def test_ratio_is_figure_over_baseline_and_none_when_either_is_missing() -> None:
    assert harness.ratio(3.0, 12.0) == 0.25
    assert harness.ratio(None, 12.0) is None
    assert harness.ratio(3.0, None) is None
    assert harness.ratio(3.0, 0.0) is None


def test_percentile_is_nearest_rank_of_unsorted_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile(values, 1.0) == 100.0
    assert harness.percentile(values, 0.0) == 1.0
    assert harness.percentile(values, 0.07) == 7.0
    assert harness.percentile([7.0], 0.99) == 7.0
    assert math.isnan(harness.percentile([], 0.5))


def test_timed_stops_at_the_count_budget() -> None:
    rate = harness.timed(lambda: 3, Budget(seconds=60, count=10))
    assert rate.operations == 12  # whole steps: 4 steps of 3 pass the count of 10
    assert 0 < rate.seconds < 60


def test_timed_stops_at_the_time_budget() -> None:
    rate = harness.timed(lambda: 1, Budget(seconds=0.05))
    assert rate.operations > 1
    assert 0.05 <= rate.seconds < 5


def test_timed_ends_when_a_step_has_nothing_left() -> None:
    left = [5, 5, 0, 5]
    rate = harness.timed(lambda: left.pop(0), Budget(seconds=60))
    assert rate.operations == 10
    assert left == [5]


def test_warm_up_runs_one_step_that_is_not_counted() -> None:
    calls = []

    def step() -> int:
        calls.append(1)
        return 1

    rate = harness.timed(step, Budget(seconds=60, count=3), warm_up=True)
    assert rate.operations == 3
    assert len(calls) == 4


def test_repeated_calls_in_doubling_batches_up_to_most() -> None:
    calls = []
    step = harness.repeated(lambda: calls.append(1), most=4)
    assert [step() for _ in range(5)] == [1, 2, 4, 4, 4]
    assert len(calls) == 15
    single = harness.repeated(lambda: None, most=1)
    assert [single() for _ in range(3)] == [1, 1, 1]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (float("nan"), "n/a"),
        (1_234_567.8, "1,234,568"),
        (100.0, "100"),
        (12.345, "12.3"),
        (0.012345, "0.0123"),
        (0.0, "0"),
    ],
)
def test_number_shows_the_digits_that_matter(value: float | None, text: str) -> None:
    assert harness.number(value) == text


def test_row_ratio_is_its_figure_over_its_baseline() -> None:
    assert Row("encode", 50.0, "msg/s", "protobuf", 200.0).ratio == 0.25
    assert Row("protobuf", 200.0, "msg/s").ratio is None


def test_table_aligns_figure_unit_baseline_ratio_and_notes() -> None:
    rows = [
        Row("encode, 10 metrics", 45_000.0, "msg/s", "protobuf serialize", 900_000.0, "22 us/msg"),
        Row("protobuf serialize, 10 metrics", 900_000.0, "msg/s"),
    ]
    lines = harness.table(rows).splitlines()
    assert lines[0].split() == ["measurement", "figure", "unit", "baseline", "baseline", "figure", "ratio", "notes"]
    assert set(lines[1]) == {"-"}
    encode = ["encode,", "10", "metrics", "45,000", "msg/s", "protobuf", "serialize", "900,000", "0.05", "22", "us/msg"]
    assert lines[2].split() == encode
    assert lines[3].split() == ["protobuf", "serialize,", "10", "metrics", "900,000", "msg/s"]
    # every figure ends in the same column, whatever the length of the measurement's name
    assert lines[2].index("45,000") + len("45,000") == lines[3].index("900,000") + len("900,000")


def test_report_prints_title_environment_table_and_lines_after(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"python": "3.11.2", "cpus": 2, "sqlite": "3.40.1"}
    harness.report("Outbox", env, [Row("append", 10.0, "samples/s", "sqlite3", 20.0)], "table", after=["a note"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Outbox", "python 3.11.2, cpus 2, sqlite 3.40.1", ""]
    assert lines[3].startswith("measurement")
    assert "0.5" in lines[5].split()
    assert lines[-2:] == ["", "a note"]


def test_report_as_json_carries_the_environment_ratios_and_extra(capsys: pytest.CaptureFixture[str]) -> None:
    env = harness.environment(sqlite="3.40.1")
    rows = [Row("append", 10.0, "samples/s", "sqlite3", 20.0)]
    harness.report("Outbox", env, rows, "json", extra={"parameters": {"batch": 100}})
    document = json.loads(capsys.readouterr().out)
    assert document["benchmark"] == "Outbox"
    assert document["environment"]["sqlite"] == "3.40.1"
    assert document["environment"]["cpus"] == os.cpu_count()
    assert document["results"] == [
        {
            "measurement": "append",
            "figure": 10.0,
            "unit": "samples/s",
            "baseline": "sqlite3",
            "baseline_figure": 20.0,
            "notes": "",
            "ratio": 0.5,
        }
    ]
    assert document["parameters"] == {"batch": 100}


def test_budget_refuses_a_budget_that_is_not_positive(capsys: pytest.CaptureFixture[str]) -> None:
    parser = harness.arguments("A bench.", seconds=1.0, count=100)
    assert harness.budget(parser, parser.parse_args(["--seconds", "0.5"])) == Budget(0.5, 100)
    for argv in (["--seconds", "0"], ["--count", "0"]):
        with pytest.raises(SystemExit):
            harness.budget(parser, parser.parse_args(argv))
    assert "must be positive" in capsys.readouterr().err


def test_positive_takes_a_count_and_refuses_zero_and_below(capsys: pytest.CaptureFixture[str]) -> None:
    parser = harness.arguments("A bench.")
    parser.add_argument("--runs", type=harness.positive, default=5)
    assert parser.parse_args(["--runs", "3"]).runs == 3
    for value in ("0", "-2", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--runs", value])
    assert "is not positive" in capsys.readouterr().err


def test_cpu_seconds_reads_user_and_system_time_from_a_stat_file(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", *["0"] * 10, str(3 * ticks), str(ticks), "0", "0"]
    stat = tmp_path / "stat"
    stat.write_text(f"4242 (a (strange) name) {' '.join(fields)}\n")
    assert harness.cpu_seconds(stat) == 4.0
    assert harness.cpu_seconds(tmp_path / "absent") is None


def test_command_output_gives_what_a_program_printed_or_a_question_mark() -> None:
    assert harness.command_output(sys.executable, "-c", "print('tool 1.2')") == "tool 1.2"
    failing = (sys.executable, "-c", "import sys; print('usage: tool 1.2'); sys.exit(3)")
    assert harness.command_output(*failing) == "?"
    assert harness.command_output(*failing, any_status=True) == "usage: tool 1.2"
    assert harness.command_output("/nonexistent/program") == "?"
