# The compiled request meter (_meter.c); asgiscale.runtime.instrument.PythonMeter is its twin.
from collections.abc import Callable, Sequence
from typing import Any

class Meter:
    open: dict[Any, int]
    response_bytes: int
    run_asgi: Callable[[Any, Any], Any]  # binds as the cycle's method, like a function
    send: Callable[[Any, Any], Any]
    def __init__(
        self,
        base_run: Callable[[Any, Any], Any],
        base_send: Callable[[Any, Any], Any],
        open: dict[Any, int],
        words: memoryview,
        place: Callable[[str, int], int],
        bounds: Sequence[int],
        waiting: Any,
        admit_next: Callable[[], None],
    ) -> None: ...
    def begin(self, cycle: Any, started: int, since: int) -> None: ...
    def finish(self, cycle: Any, status: int, started: int) -> None: ...
    def count(self, method: str, status: int, duration_ns: int) -> None: ...
    def busy_ns(self) -> int: ...
