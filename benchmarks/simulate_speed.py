"""Simulation speed: simulated seconds per wall-clock second of `asgiscale simulate`.

    python benchmarks/simulate_speed.py [--rounds 3] [--quick] [--no-docs]

A day-long diurnal trace at one-second steps, scaled so that its peak needs 100, 1,000 or
10,000 replicas, is replayed through the HPA (concurrency target) on the `kubernetes` and
`local` platforms. The reference is the same model fed one `PodSample` per replica, as a
simulator that keeps every pod apart must do: the policy and the decisions are the same (the
test suite checks that grouping does not change a decision), only the cost differs. The
reference runs on a shorter trace where it would take minutes, and its speed is per
simulated second, so the ratio holds. Sizes and the two ways take turns within each round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from _report import fmt, publish, section, table
from _servers import SERVERS

from asgiscale.policy import PodSample, ScalingPolicy
from asgiscale.scaling import Target, metric_spec
from asgiscale.simulate.model import PLATFORMS, WARM_UP, Service, SimPolicy, simulate
from asgiscale.simulate.trace import parse_shape

SERVICE = Service(capacity=100, service_time=0.05)  # 2 in flight per replica is 40 req/s at the target
PER_REPLICA_RPS = 40


class _OnePerPod:
    """The policy fed one sample per replica, as a simulator without cohorts feeds it."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.sync_period = policy.sync_period

    def observe(self, now: float, samples: Sequence[Sequence[PodSample] | None]) -> None:
        expanded = [
            None if group is None else [PodSample(s.value, s.ready) for s in group for _ in range(s.count)]
            for group in samples
        ]
        self.policy.observe(now, expanded)

    def decide(self, now: float, current_replicas: int) -> int:
        return self.policy.decide(now, current_replicas)


def policy(pods: int, expanded: bool) -> SimPolicy:
    spec = {"minReplicas": 1, "maxReplicas": pods, "metrics": [metric_spec(Target("concurrency", 2))]}
    grouped = SimPolicy.of_hpa(spec)
    if not expanded:
        return grouped

    def make() -> Any:
        return _OnePerPod(grouped.make())

    return SimPolicy("one sample per pod", make, grouped.metrics, grouped.min_replicas, grouped.max_replicas)


def speed(pods: int, platform: str, expanded: bool, duration: float) -> float:
    """Simulated seconds (the warm-up at the first rate included) per wall second, around the day's peak."""
    peak = pods * PER_REPLICA_RPS * 0.95
    shape = f"diurnal:low={peak / 20:g},peak={peak:g},duration={duration:g},period=86400,peak_at={duration / 2:g}"
    started = time.perf_counter()
    simulate(parse_shape(shape), policy(pods, expanded), SERVICE, PLATFORMS[platform])
    return (duration + WARM_UP) / (time.perf_counter() - started)


def run(rounds: int, sizes: Sequence[int], day: float, reference_span: float) -> str:
    rows = []
    for platform in ("kubernetes", "local"):
        grouped: dict[int, list[float]] = {n: [] for n in sizes}
        expanded: dict[int, list[float]] = {n: [] for n in sizes}
        for round_index in range(rounds):
            order = sizes[round_index % len(sizes) :] + sizes[: round_index % len(sizes)]
            for pods in order:
                ways = [(False, day), (True, min(day, reference_span * 100 / pods))]
                for is_expanded, duration in ways if round_index % 2 == 0 else ways[::-1]:
                    (expanded if is_expanded else grouped)[pods].append(speed(pods, platform, is_expanded, duration))
        for pods in sizes:
            g, e = statistics.median(grouped[pods]), statistics.median(expanded[pods])
            rows.append([platform, f"{pods:,}", fmt(g), fmt(day / g, ".2f"), fmt(e), f"{g / e:.1f}"])
    headers = ["platform", "replicas at the peak", "simulated s per wall s", f"wall s for {day / 3600:g} h",
               "one sample per pod: simulated s per wall s", "speed-up"]  # fmt: skip
    return (
        f"### Simulation speed, {day / 3600:g} h at 1 s steps (median of {rounds} rounds)\n\n"
        + table(headers, rows)
        + "\n\nThe trace starts where the policy settles for its first rate (15 min of warm-up, counted in the "
        "simulated time) and peaks mid-way. The reference keeps every pod apart in what the policy reads; it ran on "
        f"a stretch of {reference_span * 100:g}/replicas seconds around the same peak (its speed is per simulated "
        "second)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, a 2 h trace")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rounds, day = (1, 7200.0) if args.quick else (args.rounds, 86400.0)
    text = run(rounds, [100, 1000, 10000], day, reference_span=7200.0)
    publish(section("asgiscale simulate: speed", [SERVERS["asgiscale"]], [text]), to_docs=not args.no_docs)


if __name__ == "__main__":
    main()
