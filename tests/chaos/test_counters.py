"""The chaos tests' own judges, on made-up readings: counters only grow, outages and recoveries are measured."""

from __future__ import annotations

from tests.chaos._load import CounterHistory, Sample, counter_series, no_ready_gap, recovery_times

TEXT = """\
# HELP http_server_request_duration_seconds Duration.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{{http_request_method="GET",le="0.1"}} {bucket}
http_server_request_duration_seconds_bucket{{http_request_method="GET",le="+Inf"}} {count}
http_server_request_duration_seconds_count{{http_request_method="GET"}} {count}
http_server_request_duration_seconds_sum{{http_request_method="GET"}} 0.5
# HELP http_server_active_requests In flight.
# TYPE http_server_active_requests gauge
http_server_active_requests {active}
# HELP asgiscale_worker_http_requests_total Per worker.
# TYPE asgiscale_worker_http_requests_total counter
{workers}
"""


def scrape(bucket: int = 1, count: int = 2, active: int = 0, workers: dict[int, int] | None = None) -> str:
    lines = [f'asgiscale_worker_http_requests_total{{pid="{pid}"}} {n}' for pid, n in (workers or {}).items()]
    return TEXT.format(bucket=bucket, count=count, active=active, workers="\n".join(lines))


def test_every_counter_like_sample_is_read_and_gauges_are_not() -> None:
    series = counter_series(scrape(workers={7: 3}))
    names = {name for name, _ in series}
    assert names == {
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_sum",
        "asgiscale_worker_http_requests_total",
    }
    assert series[("asgiscale_worker_http_requests_total", (("pid", "7"),))] == 3


def test_growth_and_gauges_going_down_are_fine() -> None:
    history = CounterHistory()
    assert history.add(counter_series(scrape(1, 2, active=5, workers={7: 3}))) == []
    assert history.add(counter_series(scrape(4, 6, active=0, workers={7: 9}))) == []


def test_a_counter_or_bucket_going_back_is_caught_with_its_labels() -> None:
    history = CounterHistory()
    history.add(counter_series(scrape(3, 6)))
    found = history.add(counter_series(scrape(2, 6)))
    assert found == [
        'http_server_request_duration_seconds_bucket{http_request_method="GET",le="0.1"} went from 3 to 2 (scrape 2)'
    ]
    assert history.violations == found


def test_a_workers_own_series_may_end_with_it_but_a_total_may_not_vanish() -> None:
    history = CounterHistory()
    history.add(counter_series(scrape(workers={7: 3, 8: 4})))
    assert history.add(counter_series(scrape(workers={8: 5}))) == []
    # The same pid later is a new process: its series starts again from zero.
    assert history.add(counter_series(scrape(workers={7: 0, 8: 5}))) == []
    found = history.add({})
    assert 'http_server_request_duration_seconds_count{http_request_method="GET"} vanished at 2 (scrape 4)' in found
    assert not any("pid=" in line for line in found)


def test_a_vanished_total_that_comes_back_lower_is_caught() -> None:
    history = CounterHistory()
    history.add({("a_total", ()): 5.0})
    history.add({})
    assert history.add({("a_total", ()): 1.0}) == ["a_total went from 5 to 1 (scrape 3)"]


def sample(at: float, *ready: int) -> Sample:
    return Sample(at, at + 0.01, frozenset(ready), {pid: 1 for pid in ready}, 1)


def test_the_outage_counts_only_after_a_first_ready_worker() -> None:
    assert no_ready_gap([sample(0.0), sample(1.0), sample(2.0, 5), sample(3.0, 5)]) == 0
    gap = no_ready_gap([sample(0.0, 5), sample(1.0), sample(1.5), sample(4.0, 6), sample(5.0)])
    assert round(gap, 6) == 3.0
    assert round(no_ready_gap([sample(0.0, 5), sample(1.0), sample(2.5)]), 6) == 1.5


def test_recovery_is_the_first_sample_back_at_full_strength_without_the_victim() -> None:
    samples = [sample(0.0, 1, 2), sample(1.1, 2), sample(1.3, 1, 2), sample(1.6, 2, 3), sample(3.2, 3), sample(5.0, 3)]
    # pid 1 killed at 1.0 heals at 1.6 (1.3 still lists it: not reaped yet); pid 2 killed at 3.0 never heals.
    times = recovery_times(samples, [(1.0, 1), (3.0, 2)], target=2)
    assert [None if t is None else round(t, 6) for t in times] == [0.61, None]
