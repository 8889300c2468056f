"""`asgiscale bench`: what one worker carries at a latency objective, measured with an open-loop generator.

The parts can be used on their own:

    >>> from asgiscale.bench import Step, Target, run_step, parse_objectives, judge
    >>> result = run_step(Step(Target.parse("http://127.0.0.1:8000/"), rate=500, duration=5))  # doctest: +SKIP
    >>> judge(result, parse_objectives(["p99=50ms"]), max_errors=0.01).met  # doctest: +SKIP
"""

from asgiscale.bench.generator import LoadGenerator, Step, StepResult, Target, TargetError, run_step
from asgiscale.bench.histogram import Histogram
from asgiscale.bench.objective import Objective, ObjectiveError, Verdict, judge, parse_objectives
from asgiscale.bench.recommend import Capacity, Recommendation, recommend
from asgiscale.bench.search import CapacitySearch

__all__ = [
    "Capacity",
    "CapacitySearch",
    "Histogram",
    "LoadGenerator",
    "Objective",
    "ObjectiveError",
    "Recommendation",
    "Step",
    "StepResult",
    "Target",
    "TargetError",
    "Verdict",
    "judge",
    "parse_objectives",
    "recommend",
    "run_step",
]
