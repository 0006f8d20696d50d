"""A batch cache reads each key once, writes each changed key once, in its record's partition."""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import TP, Message

from incidentflow.domain import metrics
from incidentflow.stream.cache import BatchCache
from incidentflow.stream.context import Worker
from tests.factories import DictTable


@dataclass
class Event:
    message: Message


def event(partition: int, offset: int = 0) -> Event:
    return Event(Message("t", partition, offset, 0.0, 0, None, b"k", b"", None, tp=TP("t", partition)))


class Partitioned(DictTable):
    """A table that notes the partition of the record each write was made for, as Faust's would use."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, bytes, bytes | None]] = []
        self.reads = 0

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)

    def _partition(self) -> int:
        current = Worker.current_event()
        assert current is not None
        return int(current.message.partition)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((self._partition(), key, value))
        super().__setitem__(key, value)

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.writes.append((self._partition(), key, None))
        return super().pop(key, default)


def test_a_key_is_read_once_and_written_once_in_the_partition_of_its_record() -> None:
    table = Partitioned()
    cache = BatchCache(table, metrics.SeriesIndex)  # type: ignore[arg-type]
    with Worker.acting_for(event(3)):  # type: ignore[arg-type]
        assert cache.get(b"a") is None
        for open_count in range(1, 4):
            cache.set(b"a", metrics.SeriesIndex(service="s", severity="high", open=open_count))
        assert cache.get(b"a") == metrics.SeriesIndex(service="s", severity="high", open=3)
    with Worker.acting_for(event(5)):  # type: ignore[arg-type]
        cache.set(b"b", metrics.SeriesIndex(service="t", severity="low"))
        cache.set(b"b", None)  # removed again
    with Worker.acting_for(event(0)):  # type: ignore[arg-type]  # the batch's last record is elsewhere
        cache.write_back()
    assert table.reads == 1
    assert [(p, k, v is not None) for p, k, v in table.writes] == [(3, b"a", True), (5, b"b", False)]
    assert metrics.SeriesIndex.model_validate_json(table[b"a"]).open == 3


def test_what_a_batch_cut_short_kept_is_never_written() -> None:
    table = Partitioned()
    cache = BatchCache(table, metrics.SeriesIndex)  # type: ignore[arg-type]
    with Worker.acting_for(event(3)):  # type: ignore[arg-type]
        cache.set(b"a", metrics.SeriesIndex(service="s", severity="high", open=1))
    cache.discard()  # the next batch begins: the partition may be another worker's by now
    with Worker.acting_for(event(3)):  # type: ignore[arg-type]
        cache.write_back()
    assert table.writes == []
