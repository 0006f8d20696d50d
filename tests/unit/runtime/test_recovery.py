"""Bulk restore reads each changelog range into its partition's store and tells Faust where it got to."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict
from aiokafka import TopicPartition
from faust.types import TP

from incidentflow.runtime.recovery import BulkLoad

TOPIC = "app-aggregates-changelog"


@dataclass(frozen=True)
class Fetched:
    offset: int
    key: bytes
    value: bytes | None


@dataclass
class Changelog:
    """A consumer of the changelog topic: `records` by partition, handed out a few at a time."""

    records: dict[int, list[Fetched]]
    per_fetch: int = 3
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    fetches: int = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        found = {}
        for tp in tps:
            batch = [r for r in self.records[tp.partition] if r.offset >= self.positions[tp]][: self.per_fetch]
            if batch:
                found[tp] = batch
                self.positions[tp] = batch[-1].offset + 1
            else:
                self.positions[tp] = max(self.positions[tp], self.ends[tp.partition])
        return found

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


@dataclass
class Store:
    """Faust's RocksDB store as the bulk load uses it: a real rocksdict database per partition."""

    root: Path
    use_rocksdict: bool = True
    dbs: dict[int, rocksdict.Rdict] = field(default_factory=dict)
    persisted: dict[TP, int] = field(default_factory=dict)

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = rocksdict.Rdict(
                str(self.root / str(partition)), options=rocksdict.Options(raw_mode=True)
            )
        return self.dbs[partition]

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


@dataclass
class Topic:
    def get_topic_name(self) -> str:
        return TOPIC


@dataclass
class Table:
    data: Store
    changelog_topic: Topic = field(default_factory=Topic)


def records(partition: int, n: int, start: int = 0) -> list[Fetched]:
    return [Fetched(o, f"k{partition}-{o % 4}".encode(), f"v{o}".encode()) for o in range(start, start + n)]


def test_each_range_is_written_to_its_partitions_store_and_faust_reads_on_from_its_end(tmp_path: Path) -> None:
    store = Store(tmp_path)
    log = Changelog({0: [*records(0, 7), Fetched(7, b"k0-1", None)], 1: records(1, 5)}, ends={0: 8, 1: 5})
    load = BulkLoad("unused", {"aggregates": Table(store)}, consumer=lambda: log)  # type: ignore[dict-item]
    tps = {TP(TOPIC, 0), TP(TOPIC, 1)}
    offsets: Counter[TP] = Counter({TP(TOPIC, 0): 1, TP(TOPIC, 1): -1})  # partition 0 holds offsets 0-1 already
    highwaters = Counter({TP(TOPIC, 0): 7, TP(TOPIC, 1): 4})  # Faust's: the last offset in the log
    loaded = asyncio.run(load.run(tps, offsets, highwaters, deadline_seconds=60))
    assert loaded.complete == tps and loaded.records == 6 + 5
    assert offsets == highwaters  # Faust's recovery finds nothing left to read
    assert store.persisted == {TP(TOPIC, 0): 7, TP(TOPIC, 1): 4}
    db0 = store.dbs[0]
    assert db0.get(b"k0-2") == b"v6" and db0.get(b"k0-3") == b"v3" and db0.get(b"k0-1") is None  # deleted last
    assert db0.get(b"k0-0") == b"v4"  # offsets 0 and 1 were not read again
    assert store.dbs[1].get(b"k1-0") == b"v4"


def test_a_load_cut_short_by_its_deadline_leaves_the_rest_to_faust_from_where_it_got(tmp_path: Path) -> None:
    store = Store(tmp_path)
    log = Changelog({0: records(0, 9)}, ends={0: 9})
    load = BulkLoad("unused", {"aggregates": Table(store)}, consumer=lambda: log)  # type: ignore[dict-item]
    offsets: Counter[TP] = Counter({TP(TOPIC, 0): -1})
    loaded = asyncio.run(load.run({TP(TOPIC, 0)}, offsets, Counter({TP(TOPIC, 0): 8}), deadline_seconds=0))
    assert loaded.complete == frozenset() and loaded.records == 0 and offsets[TP(TOPIC, 0)] == -1
    assert log.fetches == 0


def test_nothing_to_read_or_a_store_that_is_not_rocksdb_is_left_to_faust(tmp_path: Path) -> None:
    memory = Store(tmp_path, use_rocksdict=False)
    load = BulkLoad("unused", {"aggregates": Table(memory)}, consumer=lambda: None)  # type: ignore[dict-item]
    offsets: Counter[TP] = Counter({TP(TOPIC, 0): -1})
    loaded = asyncio.run(load.run({TP(TOPIC, 0)}, offsets, Counter({TP(TOPIC, 0): 8}), deadline_seconds=60))
    assert loaded.records == 0 and offsets[TP(TOPIC, 0)] == -1
