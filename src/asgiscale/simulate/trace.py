"""Traffic traces for `asgiscale simulate`: the offered request rate over time.

A trace is a list of points `(time, rps, cost)`: from `time` on, requests arrive at `rps` per
second, each costing `cost` times a request as `asgiscale bench` measured it (the request mix:
2.0 when the traffic of that period is twice as heavy). It comes from one of:

- a CSV file with a header naming `time` and `rps`, and optionally `cost`; `time` in seconds
  from the start, or as ISO 8601 timestamps (then relative to the first row);
- the JSON that `asgiscale run` serves at `/status?history=SECONDS` (its per-second request
  rate: `curl 'http://127.0.0.1:9000/status?history=600' > trace.json`);
- a built-in shape, `NAME:key=value,…` (see `SHAPES`), such as `step:from=100,to=400,at=60`.

Every mistake is a `TraceError` with one line naming the file and line, or the shape's key.

    >>> trace = parse_shape("step:from=100,to=400,at=60,duration=120")
    >>> trace.rate_at(59.0), trace.rate_at(60.0), trace.duration
    (100.0, 400.0, 120.0)
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime
import difflib
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path


class TraceError(ValueError):
    """A trace that cannot be read; the message names where and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Trace:
    """Points in time order, the first at 0; the last holds until `duration`."""

    name: str
    times: tuple[float, ...]
    rps: tuple[float, ...]
    cost: tuple[float, ...]
    duration: float

    def __post_init__(self) -> None:
        if not self.times or self.times[0] != 0 or self.duration <= self.times[-1]:
            raise TraceError(f"{self.name}: a trace needs points from time 0 and a duration past the last one")

    def rate_at(self, time: float) -> float:
        return self.rps[self._index(time)]

    def _index(self, time: float) -> int:
        return max(0, bisect.bisect_right(self.times, time) - 1)

    def sample(self, step: float) -> Iterator[tuple[float, float]]:
        """`(rps, cost)` of each step of `step` seconds, read at the step's start."""
        count = math.ceil(round(self.duration / step, 9))
        index, last = 0, len(self.times) - 1
        for k in range(count):
            time = k * step
            while index < last and self.times[index + 1] <= time + 1e-9:
                index += 1
            yield self.rps[index], self.cost[index]

    @property
    def peak(self) -> float:
        return max(self.rps)

    def describe(self) -> str:
        requests = sum(
            r * (b - a) for r, a, b in zip(self.rps, self.times, (*self.times[1:], self.duration), strict=True)
        )
        return f"{self.name}: {_span(self.duration)}, peak {self.peak:,.0f} req/s, {requests:,.0f} requests"


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def load(source: str) -> Trace:
    """A trace from a file (CSV or `/status` JSON) or a shape spec; raises `TraceError`."""
    path = Path(source)
    name, colon, _ = source.partition(":")
    if (colon or name in SHAPES) and not path.exists() and re.fullmatch(r"[a-z_]+", name):
        return parse_shape(source)  # a shape, or a misspelt one: the error names the closest
    if not path.is_file():
        hint = ", ".join(SHAPES)
        raise TraceError(f"--trace {source!r}: no such file, and not a shape ({hint}), e.g. step:from=100,to=400")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot be read ({exc})") from None
    if path.suffix == ".json":
        return parse_status_json(text, str(path))
    return parse_csv(text, str(path))


# CSV ----------------------------------------------------------------------------------------------------------

COLUMNS = ("time", "rps", "cost")


def parse_csv(text: str, name: str = "trace.csv") -> Trace:
    """`time,rps[,cost]` rows under a header; blank lines and lines starting with `#` are skipped."""
    rows = [
        (number, row)
        for number, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        raise TraceError(f"{name}: no rows; write a header 'time,rps' and one row per change of rate")
    header_line, header = rows[0]
    columns = [cell.strip().lower() for cell in header]
    for column in columns:
        if column not in COLUMNS:
            close = difflib.get_close_matches(column, COLUMNS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "the columns are time, rps and (optional) cost"
            raise TraceError(f"{name}:{header_line}: unknown column {column!r}; {hint}")
    for needed in ("time", "rps"):
        if needed not in columns:
            raise TraceError(f"{name}:{header_line}: the header needs a '{needed}' column (like 'time,rps')")
    where = {column: columns.index(column) for column in columns}
    times: list[float] = []
    rates: list[float] = []
    costs: list[float] = []
    origin: datetime.datetime | None = None
    stamped: bool | None = None  # the first row decides: timestamps in every row, or seconds in every row
    for number, row in rows[1:]:
        at = f"{name}:{number}"
        if len(row) != len(columns):
            raise TraceError(f"{at}: {len(row)} values for {len(columns)} columns ({', '.join(columns)})")
        raw_time = row[where["time"]].strip()
        time, origin = _time(raw_time, origin, at)
        if stamped is not None and stamped != (origin is not None):
            raise TraceError(f"{at}: time {raw_time!r}: use seconds in every row, or timestamps in every row")
        stamped = origin is not None
        rate = _number(row[where["rps"]], "rps", at)
        cost = _number(row[where["cost"]], "cost", at) if "cost" in where else 1.0
        if rate < 0:
            raise TraceError(f"{at}: rps {rate:g} is negative; a rate is 0 or more requests per second")
        if "cost" in where and cost <= 0:
            raise TraceError(f"{at}: cost {cost:g} must be above 0 (1 is a request as bench measured it)")
        if times and time <= times[-1]:
            raise TraceError(f"{at}: time {raw_time} is not after the row before; sort the rows by time")
        times.append(time)
        rates.append(rate)
        costs.append(cost)
    if not times:
        raise TraceError(f"{name}: a header but no rows; add rows like '0,100'")
    return _from_points(name, times, rates, costs)


def _from_points(name: str, times: list[float], rates: list[float], costs: list[float]) -> Trace:
    start = times[0]
    shifted = [t - start for t in times]
    # The last point holds as long as the gap before it (one second for a single point).
    last_gap = shifted[-1] - shifted[-2] if len(shifted) > 1 else 1.0
    return Trace(name, tuple(shifted), tuple(rates), tuple(costs), shifted[-1] + last_gap)


def _number(cell: str, column: str, at: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(f"{at}: {column} {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{at}: {column} {cell.strip()!r} is not a finite number")
    return value


def _time(raw: str, origin: datetime.datetime | None, at: str) -> tuple[float, datetime.datetime | None]:
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise TraceError(f"{at}: time {raw!r} is not a finite number of seconds")
        return seconds, None
    try:
        stamp = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise TraceError(f"{at}: time {raw!r} is neither seconds nor an ISO 8601 timestamp") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    if origin is None:
        origin = stamp
    return (stamp - origin).total_seconds(), origin


# /status history ----------------------------------------------------------------------------------------------


def parse_status_json(text: str, name: str = "status.json") -> Trace:
    """The per-second request rate of a saved `/status?history=SECONDS` answer."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{name}:{exc.lineno}: not JSON ({exc.msg})") from None
    points = data.get("history") if isinstance(data, dict) else None
    if not isinstance(points, list) or not points:
        raise TraceError(
            f"{name}: no 'history' points; save it with curl 'http://127.0.0.1:9000/status?history=600'"
            " (the admin address of asgiscale run)"
        )
    times: list[float] = []
    rates: list[float] = []
    for index, point in enumerate(points):
        if not (isinstance(point, dict) and _is_number(point.get("time")) and _is_number(point.get("rps"))):
            raise TraceError(f"{name}: history[{index}] has no numeric 'time' and 'rps'")
        if times and point["time"] <= times[-1]:
            raise TraceError(f"{name}: history[{index}] is not after the point before it")
        times.append(float(point["time"]))
        rates.append(max(0.0, float(point["rps"])))
    return _from_points(name, times, rates, [1.0] * len(times))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Shapes -------------------------------------------------------------------------------------------------------

Shape = Callable[[float, dict[str, float]], float]  # the rate at time t, from the parameters


def _step(t: float, p: dict[str, float]) -> float:
    return p["to"] if t >= p["at"] else p["from"]


def _ramp(t: float, p: dict[str, float]) -> float:
    return p["from"] + (p["to"] - p["from"]) * min(1.0, t / p["duration"])


def _diurnal(t: float, p: dict[str, float]) -> float:
    phase = 2 * math.pi * (t - p["peak_at"]) / p["period"]
    return p["low"] + (p["peak"] - p["low"]) * (1 + math.cos(phase)) / 2


def _spike(t: float, p: dict[str, float]) -> float:
    return p["peak"] if p["at"] <= t < p["at"] + p["length"] else p["base"]


def _flash(t: float, p: dict[str, float]) -> float:
    if t < p["at"]:
        return p["base"]
    if t < p["at"] + p["rise"]:
        return p["base"] + (p["peak"] - p["base"]) * (t - p["at"]) / p["rise"]
    return p["base"] + (p["peak"] - p["base"]) * math.exp(-(t - p["at"] - p["rise"]) / p["decay"])


# name -> (the rate, the parameters with their defaults, what it is)
SHAPES: dict[str, tuple[Shape, dict[str, float], str]] = {
    "constant": (lambda t, p: p["rps"], {"rps": 100, "duration": 600}, "rps for the whole duration"),
    "step": (_step, {"from": 100, "to": 400, "at": 60, "duration": 600}, "from, then to from time at on"),
    "ramp": (_ramp, {"from": 0, "to": 1000, "duration": 600}, "a straight line from `from` to `to`"),
    "diurnal": (
        _diurnal,
        {"low": 100, "peak": 1000, "period": 86400, "peak_at": 50400, "duration": 86400},
        "a day: a cosine between low and peak, highest at peak_at",
    ),
    "spike": (
        _spike,
        {"base": 100, "peak": 1000, "at": 300, "length": 60, "duration": 900},
        "base, with peak for length seconds from at",
    ),
    "flash": (
        _flash,
        {"base": 100, "peak": 2000, "at": 300, "rise": 30, "decay": 300, "duration": 3600},
        "a flash crowd: base, rising to peak in rise seconds from at, then decaying (time constant decay)",
    ),
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
_TIMES = ("at", "duration", "period", "peak_at", "length", "rise", "decay")


def parse_shape(spec: str, resolution: float = 1.0) -> Trace:
    """`NAME:key=value,…`, times in seconds or with a unit (90s, 5m, 2h, 1d); sampled every `resolution` s."""
    name, _, body = spec.partition(":")
    if name not in SHAPES:
        close = difflib.get_close_matches(name, list(SHAPES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"the shapes are {', '.join(SHAPES)}"
        raise TraceError(f"trace shape {name!r} is unknown; {hint}")
    function, defaults, _ = SHAPES[name]
    params = dict(defaults)
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key in defaults and not sep:
            raise TraceError(f"trace shape {name}: {key!r} needs a value, like {key}={defaults[key]:g}")
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"its keys are {', '.join(defaults)}"
            raise TraceError(f"trace shape {name}: {item!r} is not KEY=VALUE with a known key; {hint}")
        params[key] = _shape_value(name, key, raw.strip())
    if params["duration"] <= 0 or any(params[k] <= 0 for k in ("period", "length", "rise", "decay") if k in params):
        raise TraceError(f"trace shape {name}: duration, period, length, rise and decay must be above 0")
    count = math.ceil(round(params["duration"] / resolution, 9))
    times = [k * resolution for k in range(count)]
    rates = [max(0.0, function(t, params)) for t in times]
    return Trace(spec, tuple(times), tuple(rates), (1.0,) * count, params["duration"])


def _shape_value(name: str, key: str, raw: str) -> float:
    if key in _TIMES:
        match = _DURATION.fullmatch(raw)
        if match is None:
            raise TraceError(f"trace shape {name}: {key}={raw!r} is not a time; write seconds or 90s, 5m, 2h, 1d")
        return float(match.group(1)) * _UNITS[match.group(2) or ""]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise TraceError(f"trace shape {name}: {key}={raw!r} must be a rate of 0 or more requests per second")
    return value


def describe_shapes() -> str:
    """One line per shape with its keys and defaults, for --help and the docs."""
    lines = []
    for name, (_, defaults, what) in SHAPES.items():
        keys = ",".join(f"{k}={v:g}" for k, v in defaults.items())
        lines.append(f"{name}:{keys}  ({what})")
    return "\n".join(lines)
