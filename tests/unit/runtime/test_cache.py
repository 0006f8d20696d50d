"""A batch cache reads each key once, writes each changed key once, in its record's partition."""

from __future__ import annotations

from incidentflow.domain import metrics
from incidentflow.runtime.cache import BatchCache, Recent
from tests.factories import At, DictTable, FakeContext

CONTEXT = FakeContext()


def index(service: str, severity: str, open_count: int = 0) -> metrics.SeriesIndex:
    return metrics.SeriesIndex(metric="mttr", service=service, env="prod", severity=severity, open=open_count)


class Partitioned(DictTable):
    """A table that notes the partition of the record each write was made for, as Faust's would use."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, bytes, bytes | None]] = []
        self.reads = 0

    def get(self, key: bytes, partition: int | None = None) -> bytes | None:
        self.reads += 1
        return super().get(key)

    def _partition(self) -> int:
        return CONTEXT.here().partition

    def set(self, key: bytes, value: bytes) -> None:
        self.writes.append((self._partition(), key, value))
        super().set(key, value)

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.writes.append((self._partition(), key, None))
        return super().pop(key, default)


def test_a_key_is_read_once_and_written_once_in_the_partition_of_its_record() -> None:
    table = Partitioned()
    cache = BatchCache(table, metrics.SeriesIndex, CONTEXT)
    with CONTEXT.acting_for(At(3)):
        assert cache.get(b"a") is None
        for open_count in range(1, 4):
            cache.set(b"a", index("s", "high", open_count))
        assert cache.get(b"a") == index("s", "high", 3)
    with CONTEXT.acting_for(At(5)):
        cache.set(b"b", index("t", "low"))
        cache.set(b"b", None)  # removed again
    with CONTEXT.acting_for(At(0)):  # the batch's last record is elsewhere
        cache.write_back()
    assert table.reads == 1
    assert [(p, k, v is not None) for p, k, v in table.writes] == [(3, b"a", True), (5, b"b", False)]
    assert metrics.SeriesIndex.model_validate_json(table[b"a"]).open == 3


def test_what_a_batch_cut_short_kept_is_never_written() -> None:
    table = Partitioned()
    cache = BatchCache(table, metrics.SeriesIndex, CONTEXT)
    with CONTEXT.acting_for(At(3)):
        cache.set(b"a", index("s", "high", 1))
    cache.discard()  # the next batch begins: the partition may be another worker's by now
    with CONTEXT.acting_for(At(3)):
        cache.write_back()
    assert table.writes == []


def test_recent_values_forget_the_one_used_longest_ago() -> None:
    recent: Recent[int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" used last now: "b" goes first
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)
    recent.pop("a")
    recent.pop("missing")
    assert list(recent.values) == ["c"]
