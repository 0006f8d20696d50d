"""Table writes go to their partition's store and reach the changelog in the order they were made, straight through the producer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from incidentflow.runtime.batches import Handover
from incidentflow.runtime.changelog import Changelog
from incidentflow.runtime.tables import FaustTable


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int


@dataclass
class Batch:
    """aiokafka's record batch builder, holding at most `room` records."""

    room: int
    items: list[tuple[bytes, bytes | None]] = field(default_factory=list)

    def append(self, *, key: bytes, value: bytes | None, timestamp: None, headers: Any) -> Any:
        if self.items and len(self.items) >= self.room:
            return None  # full
        self.items.append((key, value))
        return object()


@dataclass
class Producer:
    """aiokafka's producer: accepts every batch at once and acknowledges it when told to."""

    records: list[tuple[str, int | None, bytes, bytes | None]] = field(default_factory=list)
    deliveries: list[tuple[asyncio.Future[Sent], int]] = field(default_factory=list)
    """Each batch's delivery and the offset of its first record."""

    def _ensure_producer(self) -> Producer:  # Faust's producer, which holds this one
        return self

    def create_batch(self) -> Batch:
        return Batch(room=2)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        first = len(self.records)
        self.records.extend((topic, partition, key, value) for key, value in batch.items)
        delivery: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self.deliveries.append((delivery, first))
        await asyncio.sleep(0)  # another agent may run meanwhile
        return delivery


@dataclass
class Store:
    persisted: dict[TP, int] = field(default_factory=dict)
    notes: int = 0

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset
        self.notes += 1


@dataclass
class App:
    producer: Producer = field(default_factory=Producer)


class Database(dict[bytes, bytes]):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def delete(self, key: bytes) -> None:
        self.pop(key, None)


@dataclass
class RocksStore(Store):
    """What `FaustTable` uses of Faust's RocksDB store: one database per partition."""

    use_rocksdict: bool = True
    _dbs: dict[int, Database] = field(default_factory=dict)

    @property
    def dbs(self) -> dict[int, Database]:
        return self._dbs

    def _db_for_partition(self, partition: int) -> Database:
        return self._dbs.setdefault(partition, Database())


@dataclass
class Topic:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class Table:
    data: RocksStore
    changelog_topic: Topic


def test_a_table_write_goes_to_its_partitions_database_and_is_queued_for_its_changelog() -> None:
    changelog, partition = Changelog(), [3]
    store = RocksStore()
    table = FaustTable(Table(store, Topic("app-aggregates-changelog")), changelog, lambda: partition[0])  # type: ignore[arg-type]
    table.set(b"k", b"v1")
    table.pop(b"k")
    table.set(b"j", b"w")
    partition[0] = 5
    table.set(b"j", b"other partition")
    assert store.dbs[3] == {b"j": b"w"} and table.get(b"j") == b"other partition"
    assert table.get(b"j", partition=3) == b"w" and not table.has(b"k")
    assert table.get(b"j", partition=7) is None and 7 not in store.dbs  # read outside a record: never opened
    # a key written twice before a flush sends its last value only
    topic = "app-aggregates-changelog"
    assert [(where, value) for where, (value, _) in changelog.pending.items()] == [
        ((topic, 3, b"k"), None),
        ((topic, 3, b"j"), b"w"),
        ((topic, 5, b"j"), b"other partition"),
    ]


def test_two_agents_flushing_at_once_keep_the_order_of_writes() -> None:
    async def run() -> tuple[Producer, Store]:
        app, store, changelog, handover = App(), Store(), Changelog(), Handover()
        changelog.add("t-changelog", 0, b"a", b"0", store)  # overwritten before any flush: never sent
        changelog.add("t-changelog", 0, b"b", b"1", store)
        changelog.add("t-changelog", 0, b"a", b"2", store)

        async def second_agent() -> None:
            await asyncio.sleep(0)
            changelog.add("t-changelog", 0, b"a", b"3", store)  # written after the first two
            await changelog.flush(app, handover)  # type: ignore[arg-type]
            await handover.drained()  # what a commit waits for: its own record is in the producer's hands
            assert app.producer.records[-1][3] == b"3"

        await asyncio.gather(changelog.flush(app, handover), second_agent())  # type: ignore[arg-type]
        for delivery, offset in app.producer.deliveries:
            delivery.set_result(Sent("t-changelog", 0, offset))
        for _ in range(3):
            await asyncio.sleep(0)
        return app.producer, store

    producer, store = asyncio.run(run())
    assert [(key, value) for *_, key, value in producer.records] == [(b"b", b"1"), (b"a", b"2"), (b"a", b"3")]
    assert len(producer.deliveries) == 2  # a batch of the first flush's two records, one of the second's
    assert store.persisted == {TP("t-changelog", 0): 2}  # the last offset of its batch: recovery starts after it
    assert store.notes == 1  # once for the three acknowledgements: each note is a RocksDB write
