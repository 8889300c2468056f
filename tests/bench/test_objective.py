"""Latency objectives: what `--slo` accepts and rejects, and the verdict on hand-built step results."""

from __future__ import annotations

import pytest

from asgiscale.bench.generator import StepResult
from asgiscale.bench.histogram import bucket_bounds, bucket_of
from asgiscale.bench.objective import Objective, ObjectiveError, judge, parse_objectives


def step(answers: dict[int, int], *, failed: int = 0, send_lag_us: int = 0, late_share: float = 1.0) -> StepResult:
    """A step whose answers took {microseconds: how many}, with `failed` requests unanswered; `late_share` of its
    requests were sent `send_lag_us` late, the others on time."""
    result = StepResult(rate=100, duration=10)
    for latency, times in answers.items():
        result.latency.record(latency, times)
    result.sent = result.latency.count + failed
    late = round(result.sent * late_share)
    result.send_lag.record(send_lag_us, late)
    result.send_lag.record(0, result.sent - late)
    return result


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["p99=50ms"], [(99, 50_000)]),
        (["p99.9=1s"], [(99.9, 1_000_000)]),
        (["p50<=800us"], [(50, 800)]),
        (["p90<2.5ms"], [(90, 2500)]),
        (["p95 = 120 µs"], [(95, 120)]),
        (["P99=50MS"], [(99, 50_000)]),
        (["p99=50ms,p50=10ms"], [(99, 50_000), (50, 10_000)]),
        (["p99=50ms, p50=10ms,"], [(99, 50_000), (50, 10_000)]),
        (["p99=50ms", "p50=10ms", "p0.5=1ms"], [(99, 50_000), (50, 10_000), (0.5, 1000)]),
    ],
)
def test_accepted_objectives(texts: list[str], expected: list[tuple[float, int]]) -> None:
    assert parse_objectives(texts) == tuple(Objective(p, limit) for p, limit in expected)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["p100=1ms"], "objective 'p100=1ms' is not like p99=50ms"),
        (["p0=1ms"], "objective 'p0=1ms': the percentile must be above 0 and below 100"),
        (["p99=0ms"], "objective 'p99=0ms': the latency must be above zero"),
        (["p99=0.1us"], "objective 'p99=0.1us': the latency must be above zero"),
        (["99=50ms"], "objective '99=50ms' is not like p99=50ms"),
        (["p99=50"], "objective 'p99=50' is not like p99=50ms"),
        (["p99=50 minutes"], "objective 'p99=50 minutes' is not like p99=50ms"),
        (["p99=50ms,p50"], "objective 'p50' is not like p99=50ms"),
        (["p99=50ms", "p99=20ms"], "objective p99 is given twice"),
        (["p99=50ms,p99.0=20ms"], "objective p99 is given twice"),
    ],
)
def test_rejected_objectives_name_the_bad_text(texts: list[str], message: str) -> None:
    with pytest.raises(ObjectiveError) as info:
        parse_objectives(texts)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("texts", [[], [""], [" , ,"]])
def test_no_objective_at_all_is_an_error(texts: list[str]) -> None:
    with pytest.raises(ObjectiveError, match="no objective given"):
        parse_objectives(texts)


@pytest.mark.parametrize(
    ("text", "spec", "shown"),
    [
        ("p99=50ms", "p99=50ms", "p99 ≤ 50 ms"),
        ("p99.9 <= 1000ms", "p99.9=1s", "p99.9 ≤ 1 s"),
        ("p50<=800us", "p50=800us", "p50 ≤ 800 us"),
        ("p95=2.5s", "p95=2500ms", "p95 ≤ 2.5 s"),
        ("p99.99=0.12s", "p99.99=120ms", "p99.99 ≤ 120 ms"),
        ("p75=1500us", "p75=1500us", "p75 ≤ 1.5 ms"),
    ],
)
def test_spec_is_read_back_as_the_same_objective(text: str, spec: str, shown: str) -> None:
    (objective,) = parse_objectives([text])
    assert objective.spec() == spec
    assert str(objective) == shown
    assert parse_objectives([objective.spec()]) == (objective,)


@pytest.mark.parametrize("text", ["p99=1234us", "p99=999.9ms"])
def test_spec_keeps_every_limit_the_parser_accepts(text: str) -> None:
    (objective,) = parse_objectives([text])
    assert parse_objectives([objective.spec()]) == (objective,)


P99_50MS = parse_objectives(["p99=50ms"])


def test_met_when_every_percentile_is_within() -> None:
    verdict = judge(step({10_000: 990, 40_000: 10}), P99_50MS, max_errors=0.01)
    assert verdict.met
    assert verdict.reasons == ()
    assert verdict.percentiles == {"p99": bucket_bounds(bucket_of(10_000))[1]}  # the bucket's upper edge
    assert verdict.error_share == 0
    assert not verdict.generator_behind


def test_missed_names_the_percentile_and_the_value() -> None:
    verdict = judge(step({10_000: 98, 80_000: 2}), P99_50MS, max_errors=0.01)
    assert not verdict.met
    assert verdict.percentiles == {"p99": 80_000}
    assert verdict.reasons == ("p99 80 ms > 50 ms",)


def test_only_the_objective_missed_is_named() -> None:
    objectives = parse_objectives(["p50=5ms,p99=50ms"])
    verdict = judge(step({1000: 40, 20_000: 60}), objectives, max_errors=0.01)
    assert not verdict.met
    assert verdict.percentiles == {"p50": 20_000, "p99": 20_000}
    assert verdict.reasons == ("p50 20 ms > 5 ms",)


def test_failures_count_as_infinitely_slow() -> None:
    # 2 % failed: rank 99 of 100 is a request that never answered, however fast the 98 others were.
    verdict = judge(step({1000: 98}, failed=2), P99_50MS, max_errors=0.05)
    assert not verdict.met
    assert verdict.percentiles == {"p99": None}
    assert verdict.reasons == ("p99 beyond every answer > 50 ms",)
    assert verdict.error_share == pytest.approx(0.02)


def test_failures_below_the_percentile_leave_it_to_the_answers() -> None:
    verdict = judge(step({1000: 99}, failed=1), P99_50MS, max_errors=0.01)
    assert verdict.met
    assert verdict.percentiles == {"p99": 1000}


def test_max_errors_bounds_the_failed_share_on_its_own() -> None:
    objectives = parse_objectives(["p50=50ms"])
    result = step({1000: 980}, failed=20)
    missed = judge(result, objectives, max_errors=0.01)
    assert not missed.met
    assert missed.reasons == ("2.0% failed > 1.0%",)
    assert judge(result, objectives, max_errors=0.05).met


def test_a_generator_behind_its_schedule_is_reported() -> None:
    verdict = judge(step({1000: 1000}, send_lag_us=20_000), P99_50MS, max_errors=0.01)
    assert verdict.generator_behind
    assert not verdict.met
    assert len(verdict.reasons) == 1
    assert "generator fell behind" in verdict.reasons[0]
    assert "20 ms" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("lag_us", "late_share", "slos", "behind"),
    [
        # Most requests late: the generator cannot keep up once the median passes 5 ms and a fifth of the objective.
        (8_000, 1.0, ["p99=50ms"], False),
        (11_000, 1.0, ["p99=50ms"], True),
        (4_000, 1.0, ["p99=1ms"], False),  # a fifth of a tight objective, but under 5 ms
        (6_000, 1.0, ["p99=500ms", "p50=20ms"], True),  # against the tightest objective
        # A tail of late sends (a busy machine's scheduling delays) only once it passes half the objective.
        (20_000, 0.05, ["p99=50ms"], False),
        (26_000, 0.05, ["p99=50ms"], True),
        (4_000, 0.05, ["p99=1ms"], False),  # half of a tight objective, but under 5 ms
    ],
)
def test_send_lag_is_behind_when_its_median_or_its_tail_could_decide_the_verdict(
    lag_us: int, late_share: float, slos: list[str], behind: bool
) -> None:
    result = step({100: 1000}, send_lag_us=lag_us, late_share=late_share)
    verdict = judge(result, parse_objectives(slos), max_errors=0.01)
    assert verdict.generator_behind is behind
    assert verdict.met is not behind


def test_a_step_that_sent_nothing_is_not_met() -> None:
    verdict = judge(step({}), P99_50MS, max_errors=0.01)
    assert not verdict.met
    assert verdict.percentiles == {"p99": None}
