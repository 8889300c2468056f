"""Traces for `asgiscale simulate`: CSV files, saved `/status` histories and the built-in shapes, read into
the offered rate over time, and every mistake reported as one line naming the file and line or the shape's key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from asgiscale.runtime.shm import DURATION_BUCKETS
from asgiscale.runtime.status import History, Sample
from asgiscale.simulate.trace import SHAPES, Trace, TraceError, load, parse_csv, parse_shape, parse_status_json

# CSV ----------------------------------------------------------------------------------------------------------


def test_a_csv_trace_holds_each_rate_until_the_next_row() -> None:
    trace = parse_csv("time,rps\n0,100\n30,400\n45,50\n", "t.csv")
    assert (trace.times, trace.rps, trace.cost) == ((0.0, 30.0, 45.0), (100.0, 400.0, 50.0), (1.0, 1.0, 1.0))
    # The last row holds as long as the gap before it (15 s): the trace ends at 60 s.
    assert trace.duration == 60.0
    assert [trace.rate_at(t) for t in (0.0, 29.9, 30.0, 44.0, 45.0, 59.9)] == [100, 100, 400, 400, 50, 50]


def test_a_single_row_lasts_one_second() -> None:
    trace = parse_csv("time,rps\n0,7\n")
    assert (trace.times, trace.duration) == ((0.0,), 1.0)


def test_the_header_is_case_and_space_insensitive_and_in_any_order() -> None:
    trace = parse_csv(" RPS , Time ,Cost\n10,0,2\n20,5,0.5\n")
    assert (trace.times, trace.rps, trace.cost) == ((0.0, 5.0), (10.0, 20.0), (2.0, 0.5))


def test_times_are_made_relative_to_the_first_row() -> None:
    trace = parse_csv("time,rps\n100,1\n160,2\n")
    assert (trace.times, trace.duration) == ((0.0, 60.0), 120.0)


def test_iso_timestamps_are_seconds_after_the_first_row_whatever_their_offset() -> None:
    text = (
        "time,rps\n"
        "2024-05-01T12:00:00Z,100\n"
        "2024-05-01T14:01:30+02:00,200\n"  # 12:01:30 UTC: 90 s later
        "2024-05-01T12:02:00,300\n"  # no offset: UTC, 120 s after the first row
    )
    trace = parse_csv(text)
    assert trace.times == (0.0, 90.0, 120.0)
    assert trace.duration == 150.0


def test_comments_and_blank_lines_are_skipped() -> None:
    trace = parse_csv("# from production, 1 May\n\ntime,rps\n# night\n0,10\n\n  # day\n60,90\n")
    assert (trace.times, trace.rps) == ((0.0, 60.0), (10.0, 90.0))


def test_the_cost_column_is_the_request_mix_and_defaults_to_one() -> None:
    assert parse_csv("time,rps,cost\n0,100,2\n10,100,0.5\n").cost == (2.0, 0.5)
    assert parse_csv("time,rps\n0,100\n10,100\n").cost == (1.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.csv: no rows; write a header 'time,rps'"),
        ("# only a comment\n\n", "t.csv: no rows;"),
        ("time,rps\n", "t.csv: a header but no rows; add rows like '0,100'"),
        ("time,cost\n0,1\n", "t.csv:1: the header needs a 'rps' column (like 'time,rps')"),
        ("rps\n0\n", "t.csv:1: the header needs a 'time' column"),
        # The header's line counts the comment and the blank line above it.
        ("# load\n\ntime,rsp\n0,1\n", "t.csv:3: unknown column 'rsp'; did you mean 'rps'?"),
        ("tiem,rps\n0,1\n", "t.csv:1: unknown column 'tiem'; did you mean 'time'?"),
        (
            "time,rps,region\n0,1,eu\n",
            "t.csv:1: unknown column 'region'; the columns are time, rps and (optional) cost",
        ),
    ],
)
def test_a_bad_header_is_named_with_its_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_csv(text, "t.csv")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Line numbers count the header, comments and blank lines: the bad row is the file's line 5.
        ("time,rps\n# warm\n0,10\n\n5,abc\n", "t.csv:5: rps 'abc' is not a number"),
        ("time,rps\n0,10\n5\n", "t.csv:3: 1 values for 2 columns (time, rps)"),
        ("time,rps\n0,10\n5,nan\n", "t.csv:3: rps 'nan' is not a finite number"),
        ("time,rps\n0,10\n5,-1\n", "t.csv:3: rps -1 is negative"),
        ("time,rps,cost\n0,10,1\n\n5,10,0\n", "t.csv:4: cost 0 must be above 0"),
        ("time,rps\n0,10\n10,10\n5,10\n", "t.csv:4: time 5 is not after the row before; sort the rows by time"),
        ("time,rps\n0,10\n0,20\n", "t.csv:3: time 0 is not after the row before"),
        ("time,rps\n0,10\nsoon,20\n", "t.csv:3: time 'soon' is neither seconds nor an ISO 8601 timestamp"),
        ("time,rps\n0,10\ninf,20\n", "t.csv:3: time 'inf'"),
    ],
)
def test_a_bad_row_is_named_with_its_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_csv(text, "t.csv")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "time,rps\n2024-05-01T12:00:00Z,10\n5,20\n",  # timestamps, then seconds
        "time,rps\n0,10\n2024-05-01T12:00:00Z,20\n",  # seconds, then a timestamp
        "time,rps\n-10,10\n2024-05-01T12:00:00Z,20\n",  # seconds the timestamp would silently follow
    ],
)
def test_mixing_seconds_and_timestamps_is_refused_either_way(text: str) -> None:
    # A timestamp carries no meaning in seconds from the start (and seconds none as a moment): every row must
    # use one kind, whichever comes first, and the row that breaks it is named.
    with pytest.raises(TraceError, match=r"^t\.csv:3: .*use seconds in every row, or timestamps in every row"):
        parse_csv(text, "t.csv")


# /status history ----------------------------------------------------------------------------------------------


def _sample(second: int, requests: int) -> Sample:
    return Sample(
        wall=1_700_000_000.0 + second,
        monotonic=5_000.0 + second,
        requests=requests,
        errors=0,
        buckets=(0,) * (len(DURATION_BUCKETS) + 1),
        in_flight=0,
        workers={"booting": 0, "ready": 2, "draining": 0},
        processes={},
    )


def test_a_status_history_is_the_per_second_request_rate() -> None:
    # What `asgiscale run` keeps: one cumulative request count a second; /status?history=N turns consecutive
    # samples into rates. 100 requests a second for 30 s, then 400 a second for 30 s.
    history = History()
    requests = 0
    for second in range(61):
        history.add(_sample(second, requests))
        requests += 100 if second < 30 else 400
    text = json.dumps({"rates": {"window": 10}, "history": history.series(600)})
    trace = parse_status_json(text, "status.json")
    # The first rate is known at the second sample: 60 points, 1 s apart, from 0; the last holds 1 s.
    assert trace.times == tuple(float(t) for t in range(60))
    assert trace.rps == (100.0,) * 30 + (400.0,) * 30
    assert trace.duration == 60.0
    assert trace.cost == (1.0,) * 60


def test_a_status_history_through_load_uses_the_json_suffix(tmp_path: Path) -> None:
    history = History()
    for second in range(4):
        history.add(_sample(second, 50 * second))
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"history": history.series(600)}))
    trace = load(str(path))
    assert (trace.name, trace.rps, trace.duration) == (str(path), (50.0, 50.0, 50.0), 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"history": [', "s.json:1: not JSON ("),
        ('{"history": []}', "s.json: no 'history' points; save it with curl"),
        ('{"rates": {}}', "s.json: no 'history' points"),
        ("[1, 2]", "s.json: no 'history' points"),
        ('{"history": [{"time": 1, "rps": 2}, {"time": 2}]}', "s.json: history[1] has no numeric 'time' and 'rps'"),
        ('{"history": [{"time": true, "rps": 2}]}', "s.json: history[0] has no numeric 'time' and 'rps'"),
        ('{"history": [{"time": 2, "rps": 2}, {"time": 2, "rps": 3}]}', "s.json: history[1] is not after the point"),
    ],
)
def test_a_bad_status_history_is_one_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_status_json(text, "s.json")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# Shapes -------------------------------------------------------------------------------------------------------


def test_every_shape_has_a_description_and_its_defaults_make_a_trace() -> None:
    for name, (_, defaults, what) in SHAPES.items():
        trace = parse_shape(name, resolution=60.0)
        assert what and trace.duration == defaults["duration"], name
        assert trace.times[0] == 0.0 and all(r >= 0 for r in trace.rps), name


def test_constant() -> None:
    trace = parse_shape("constant:rps=250,duration=30")
    assert set(trace.rps) == {250.0} and trace.duration == 30.0


def test_step_changes_rate_at_at() -> None:
    trace = parse_shape("step:from=100,to=400,at=60,duration=120")
    assert (trace.rate_at(0), trace.rate_at(59), trace.rate_at(60), trace.rate_at(119)) == (100, 100, 400, 400)


def test_ramp_is_a_straight_line_over_the_duration() -> None:
    trace = parse_shape("ramp:from=100,to=1100,duration=100")
    # from + (to - from) x t / duration
    assert [trace.rate_at(t) for t in (0, 25, 50, 99)] == [100, 350, 600, 1090]


def test_diurnal_peaks_at_peak_at_and_is_lowest_half_a_period_later() -> None:
    trace = parse_shape("diurnal:low=100,peak=1000,period=3600,peak_at=900,duration=3600")
    assert trace.rate_at(900) == pytest.approx(1000)
    assert trace.rate_at(900 + 1800) == pytest.approx(100)
    # A quarter period from the peak, the cosine is at 0: halfway between low and peak.
    assert trace.rate_at(900 + 900) == pytest.approx(550)
    assert trace.rate_at(0) == pytest.approx(550)
    assert trace.peak == pytest.approx(1000)


def test_spike_is_peak_for_length_seconds_from_at() -> None:
    trace = parse_shape("spike:base=100,peak=1000,at=300,length=60,duration=900")
    assert [trace.rate_at(t) for t in (299, 300, 359, 360, 899)] == [100, 1000, 1000, 100, 100]


def test_flash_rises_linearly_then_decays_exponentially() -> None:
    trace = parse_shape("flash:base=100,peak=2100,at=300,rise=30,decay=300,duration=3600")
    assert trace.rate_at(299) == 100
    assert trace.rate_at(315) == pytest.approx(1100)  # halfway up the rise
    assert trace.rate_at(330) == pytest.approx(2100)  # at the top: exp(0)
    # One time constant after the top, base + (peak - base) / e.
    assert trace.rate_at(630) == pytest.approx(100 + 2000 / math.e)
    assert trace.rate_at(3599) == pytest.approx(100 + 2000 * math.exp(-(3599 - 330) / 300))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("1.5m", 90.0), ("1500ms", 1.5)],
)
def test_times_take_a_unit(value: str, seconds: float) -> None:
    third = seconds / 3
    assert parse_shape(f"constant:duration={value}", resolution=third).duration == seconds
    step = parse_shape(f"step:from=1,to=2,at={value},duration={seconds * 2:g}", resolution=third)
    assert (step.rate_at(seconds - third), step.rate_at(seconds)) == (1.0, 2.0)


def test_the_resolution_samples_the_shape() -> None:
    trace = parse_shape("ramp:from=0,to=100,duration=10", resolution=2.0)
    assert (trace.times, trace.rps) == ((0.0, 2.0, 4.0, 6.0, 8.0), (0.0, 20.0, 40.0, 60.0, 80.0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("stpe:from=1", "trace shape 'stpe' is unknown; did you mean 'step'?"),
        ("wobble", "trace shape 'wobble' is unknown; the shapes are constant, step, ramp, diurnal, spike, flash"),
        ("step:form=1", "trace shape step: 'form=1' is not KEY=VALUE with a known key; did you mean 'from'?"),
        ("step:height=1", "trace shape step: 'height=1' is not KEY=VALUE with a known key; its keys are from, to"),
        ("step:from", "trace shape step: 'from' needs a value, like from=100"),
        ("step:at=5x", "trace shape step: at='5x' is not a time; write seconds or 90s, 5m, 2h, 1d"),
        ("step:at=-5", "trace shape step: at='-5' is not a time"),
        ("step:from=-1", "trace shape step: from='-1' must be a rate of 0 or more requests per second"),
        ("step:from=lots", "trace shape step: from='lots' must be a rate"),
        ("step:to=inf", "trace shape step: to='inf' must be a rate"),
        ("constant:duration=0", "trace shape constant: duration, period, length, rise and decay must be above 0"),
        ("spike:length=0s", "trace shape spike: duration, period, length, rise and decay must be above 0"),
    ],
)
def test_a_bad_shape_names_the_key_and_the_closest_name(spec: str, message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_shape(spec)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# Trace ---------------------------------------------------------------------------------------------------------


def test_sample_holds_each_rate_from_its_time_and_reads_each_step_at_its_start() -> None:
    trace = parse_csv("time,rps,cost\n0,10,1\n2.5,20,2\n4,30,3\n")
    assert trace.duration == 5.5  # the last point holds for the 1.5 s gap before it
    # Steps of 1 s start at 0, 1, ..., 5 (ceil(5.5) steps); 2.5 s falls inside the step from 2, read at 2.
    assert list(trace.sample(1.0)) == [(10, 1), (10, 1), (10, 1), (20, 2), (30, 3), (30, 3)]
    assert list(trace.sample(2.0)) == [(10, 1), (10, 1), (30, 3)]
    # A point exactly at a step's start counts from that step.
    assert list(trace.sample(0.5))[5] == (20, 2)


def test_describe_counts_the_requests_of_the_trace() -> None:
    trace = parse_csv("time,rps\n0,10\n2.5,20\n4,30\n", "t.csv")
    # 10 x 2.5 s + 20 x 1.5 s + 30 x 1.5 s = 100 requests
    assert trace.describe() == "t.csv: 5.5 s, peak 30 req/s, 100 requests"
    assert (
        parse_shape("constant:rps=1000,duration=2h", resolution=60)
        .describe()
        .endswith(": 2 h, peak 1,000 req/s, 7,200,000 requests")
    )


def test_a_trace_starts_at_zero_and_ends_after_its_last_point() -> None:
    with pytest.raises(TraceError):
        Trace("x", (1.0,), (1.0,), (1.0,), 2.0)
    with pytest.raises(TraceError):
        Trace("x", (0.0, 5.0), (1.0, 1.0), (1.0, 1.0), 5.0)
    with pytest.raises(TraceError):
        Trace("x", (), (), (), 1.0)


# load ----------------------------------------------------------------------------------------------------------


def test_load_reads_a_shape_spec_or_a_bare_shape_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load("step:from=5,to=6,at=1,duration=2").rps == (5.0, 6.0)
    assert load("spike").duration == SHAPES["spike"][1]["duration"]


def test_load_prefers_an_existing_file_named_like_a_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "step").write_text("time,rps\n0,3\n")
    assert load("step").rps == (3.0,)


def test_load_reads_a_csv_file_of_any_other_suffix(tmp_path: Path) -> None:
    path = tmp_path / "prod.txt"
    path.write_text("time,rps\n0,3\n10,4\n")
    trace = load(str(path))
    assert (trace.name, trace.rps, trace.duration) == (str(path), (3.0, 4.0), 20.0)


def test_load_names_the_closest_shape_or_the_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TraceError, match=r"^trace shape 'stpe' is unknown; did you mean 'step'\?$"):
        load("stpe:from=1")
    with pytest.raises(TraceError, match=r"^--trace 'missing\.csv': no such file, and not a shape \(constant, step"):
        load("missing.csv")
    (tmp_path / "dir").mkdir()
    with pytest.raises(TraceError, match="no such file"):
        load("dir")


def test_load_reports_a_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(b"time,rps\n0,\xff\xfe\n")
    with pytest.raises(TraceError, match=r"trace\.csv: cannot be read \("):
        load(str(path))
