import re
from pathlib import Path

from asgiscale.config import settings_markdown
from asgiscale.runtime.exposition import TableCollector
from asgiscale.runtime.metrics import Recorder, read, share_pairs
from asgiscale.runtime.shm import Field, SlotTable, WorkerState
from asgiscale.runtime.status import Process

DOCS = Path(__file__).parent.parent / "docs"


def test_settings_reference_is_current() -> None:
    assert (DOCS / "settings.md").read_text() == settings_markdown(), "regenerate docs/settings.md (see its header)"


def test_every_exposed_metric_is_documented() -> None:
    table = SlotTable(1)
    slot = table.slot(0)
    slot.reset()
    slot.set(Field.PID, 123)
    slot.set(Field.STATE, WorkerState.READY)
    share_pairs(table, [0])
    recorder = Recorder(slot)
    recorder.record("GET", 200, 1)
    recorder.flush()
    collector = TableCollector(lambda: (read(table), {123: Process(1.0, 1 << 20)}, True))
    exposed = set()
    for family in collector.collect():
        suffix = {"counter": "_total"}.get(family.type, "")
        exposed.add(family.name + suffix)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", (DOCS / "metrics.md").read_text(), flags=re.M))
    assert exposed == documented


def test_the_trace_shapes_are_documented_as_they_are() -> None:
    from asgiscale.simulate.trace import describe_shapes

    page = (DOCS / "simulate.md").read_text()
    documented = "\n".join(line.strip() for line in page.splitlines())
    assert describe_shapes() in documented, "update the shapes block of docs/simulate.md"
