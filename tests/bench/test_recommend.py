"""Scaling settings from a capacity measurement: the target, the CPU request, replicas, and the config table."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgiscale import scaling
from asgiscale.bench.configfile import capacity_table
from asgiscale.bench.recommend import CPU_BOUND, Capacity, Recommendation, recommend
from asgiscale.policy.hpa import parse_quantity

headrooms = st.floats(0, 0.9)
rates = st.floats(1, 100_000)


def millicores(quantity: str) -> Decimal:
    assert quantity.isdigit() or (quantity[:-1].isdigit() and quantity.endswith("m")), quantity
    return parse_quantity(quantity) * 1000


def report_of(rec: Recommendation, objectives: tuple[str, ...] = ("p99=50ms",)) -> dict[str, Any]:
    """The parts of a bench report `capacity_table` reads, as `runner.run_bench` builds them."""
    recommendation = {**dataclasses.asdict(rec), "scaling": {str(k): v for k, v in rec.scaling.items()}}
    return {"objectives": list(objectives), "finished": "2025-01-01T00:00:00+00:00", "recommendation": recommendation}


@pytest.mark.parametrize(
    ("cpu", "headroom", "peak", "target", "cpu_request", "replicas"),
    [
        (0.93, 0.2, 5000, "cpu=74", "930m", 16),  # 5000 / (400 x 0.8) = 15.6
        (0.871, 0.2, 3200, "cpu=70", "880m", 10),  # 3200 / 320 = 10 exactly: no extra replica
        (1.0, 0.3, 281, "cpu=70", "1", 2),
        (1.234, 0.0, 400, "cpu=123", "1240m", 1),
        (CPU_BOUND, 0.5, 100, "cpu=30", "600m", 1),
    ],
)
def test_a_cpu_bound_worker_scales_on_cpu(
    cpu: float, headroom: float, peak: float, target: str, cpu_request: str, replicas: int
) -> None:
    rec = recommend(
        [Capacity(workers=1, rps=400, mean_latency_s=0.012, cpu_cores=cpu)], headroom=headroom, peak_rps=peak
    )
    assert (rec.target, rec.cpu_request, rec.replicas_at_peak) == (target, cpu_request, replicas)
    assert rec.cpu_per_worker == cpu
    assert "CPU-bound" in rec.why


@given(cpu=st.floats(CPU_BOUND, 4), headroom=headrooms, rps=rates, peak=st.floats(1, 1e6))
def test_cpu_target_request_and_replicas_follow_their_formulas(
    cpu: float, headroom: float, rps: float, peak: float
) -> None:
    rec = recommend([Capacity(1, rps, 0.01, cpu)], headroom=headroom, peak_rps=peak)
    assert rec.target == f"cpu={max(1, round(100 * cpu * (1 - headroom)))}"
    assert rec.cpu_request is not None
    request = millicores(rec.cpu_request)
    assert request % 10 == 0
    assert cpu * 1000 - 1e-6 <= request < cpu * 1000 + 10
    assert rec.replicas_at_peak == max(1, math.ceil(peak / (rps * (1 - headroom))))


@pytest.mark.parametrize(("cpu", "cpu_request"), [(0.1, "100m"), (0.0001, "10m"), (0.123, "130m"), (None, None)])
def test_an_io_bound_worker_scales_on_its_request_rate(cpu: float | None, cpu_request: str | None) -> None:
    rec = recommend([Capacity(workers=1, rps=400, mean_latency_s=0.05, cpu_cores=cpu)], headroom=0.2, peak_rps=1000)
    assert rec.target == "rps=320"
    assert rec.cpu_request == cpu_request
    assert rec.replicas_at_peak == 4  # 1000 / 320 = 3.1
    assert "the request rate does" in rec.why


def test_the_rate_target_is_per_worker() -> None:
    rec = recommend([Capacity(workers=4, rps=1000, mean_latency_s=0.02, cpu_cores=0.2)], headroom=0.25)
    assert rec.rps_per_worker == 250
    assert rec.target == "rps=187.5"
    assert rec.peak_rps is None and rec.replicas_at_peak is None


@pytest.mark.parametrize(("rps", "latency", "concurrency"), [(400, 0.012, 4.8), (2000, 0.25, 500), (10, 0.001, 0.01)])
def test_concurrency_per_worker_is_littles_law(rps: float, latency: float, concurrency: float) -> None:
    rec = recommend([Capacity(workers=2, rps=2 * rps, mean_latency_s=latency)])
    assert rec.concurrency_per_worker == pytest.approx(concurrency)


def test_scaling_efficiency_is_per_worker_count_against_the_fewest_workers() -> None:
    capacities = [Capacity(4, 1400, 0.02, 0.9), Capacity(1, 400, 0.01, 0.95), Capacity(2, 760, 0.012, 0.92)]
    rec = recommend(capacities)
    assert rec.rps_per_worker == 400  # the one-worker figure is the base
    assert rec.cpu_per_worker == 0.95
    assert rec.scaling == {1: 1.0, 2: pytest.approx(0.95), 4: pytest.approx(0.875)}
    assert list(rec.scaling) == [1, 2, 4]


def test_without_a_one_worker_measurement_the_fewest_workers_are_the_base() -> None:
    rec = recommend([Capacity(8, 2400, 0.01), Capacity(2, 1000, 0.01)])
    assert rec.rps_per_worker == 500
    assert rec.scaling == {2: 1.0, 8: pytest.approx(0.6)}


@given(cpu=st.none() | st.floats(0, 4), headroom=headrooms, rps=rates)
def test_the_target_is_a_valid_scale_target(cpu: float | None, headroom: float, rps: float) -> None:
    rec = recommend([Capacity(1, rps, 0.01, cpu)], headroom=headroom)
    (target,) = scaling.parse_targets([rec.target])
    if cpu is not None and cpu >= CPU_BOUND:
        assert target.metric == "cpu"
        assert target.value == round(100 * cpu * (1 - headroom))
    else:
        assert target.metric == "rps"
        assert target.value == pytest.approx(rps * (1 - headroom), rel=1e-5, abs=0.05)


def test_a_very_slow_worker_still_gets_a_valid_rate_target() -> None:
    rec = recommend([Capacity(workers=1, rps=0.05, mean_latency_s=2.0)], headroom=0.2)
    (target,) = scaling.parse_targets([rec.target])
    assert target.value > 0


@given(cpu=st.none() | st.floats(0.01, 4), headroom=headrooms, rps=rates, peak=st.none() | st.floats(1, 1e6))
def test_the_capacity_table_holds_only_known_keys_and_valid_values(
    cpu: float | None, headroom: float, rps: float, peak: float | None
) -> None:
    rec = recommend([Capacity(1, rps, 0.05, cpu)], headroom=headroom, peak_rps=peak)
    table = capacity_table(report_of(rec))
    assert set(table) <= set(scaling.CAPACITY_KEYS)
    assert {"objective", "measured", "rps_per_worker", "concurrency_per_worker"} <= set(table)
    assert ("cpu_per_worker" in table) is (cpu is not None)
    assert ("replicas_at_peak" in table) is (peak is not None)
    scaling.check_table({"capacity": table})


def test_the_capacity_table_values() -> None:
    rec = recommend([Capacity(1, 400, 0.012, 0.93)], headroom=0.2, peak_rps=5000)
    table = capacity_table(report_of(rec, ("p99=50ms", "p50=10ms")))
    assert table == {
        "objective": "p99=50ms,p50=10ms",
        "measured": "2025-01-01T00:00:00+00:00",
        "rps_per_worker": 400,
        "concurrency_per_worker": 4.8,
        "cpu_per_worker": 0.93,
        "peak_rps": 5000,
        "replicas_at_peak": 16,
    }


def test_a_worker_measured_nearly_idle_still_gives_a_valid_capacity_table() -> None:
    rec = recommend([Capacity(workers=1, rps=5, mean_latency_s=0.2, cpu_cores=0.0)])
    scaling.check_table({"capacity": capacity_table(report_of(rec))})


@pytest.mark.parametrize("headroom", [-0.1, 1.0, 1.5])
def test_a_headroom_outside_0_to_1_is_refused(headroom: float) -> None:
    with pytest.raises(ValueError, match="headroom"):
        recommend([Capacity(1, 100, 0.01)], headroom=headroom)


def test_no_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="no capacity"):
        recommend([])
