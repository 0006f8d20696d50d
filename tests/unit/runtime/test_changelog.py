"""Table writes reach the changelog in the order they were made, straight through the producer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faust.types import TP

from incidentflow.config import Integrations, Settings
from incidentflow.runtime.changelog import Changelog
from incidentflow.stream.app import create_worker


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int


@dataclass
class Producer:
    """Accepts every record at once and acknowledges it when told to."""

    records: list[tuple[str, int | None, bytes, bytes | None]] = field(default_factory=list)
    deliveries: list[asyncio.Future[Sent]] = field(default_factory=list)

    async def send(self, topic: str, key: bytes, value: bytes | None, *, partition: int | None, **_: Any) -> Any:
        self.records.append((topic, partition, key, value))
        delivery: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
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


def test_a_table_write_is_queued_for_its_changelog_partition(tmp_path: Path) -> None:
    worker = create_worker(Settings(store="memory://", data_dir=tmp_path), Integrations(by_name={}))
    table = worker.tables["aggregates"]
    table.partition_for_key = lambda key: 3  # type: ignore[method-assign]  # what an agent's record gives
    table.on_key_set(b"k", b"v1")  # what `table[key] = value` calls, after the store write
    table.on_key_del(b"k")
    topic = table.changelog_topic.get_topic_name()
    table.on_key_set(b"j", b"w")
    # a key written twice before a flush sends its last value only
    assert [(where, value) for where, (value, _) in worker.changelog.pending.items()] == [
        ((topic, 3, b"k"), None),
        ((topic, 3, b"j"), b"w"),
    ]


def test_two_agents_flushing_at_once_keep_the_order_of_writes() -> None:
    async def run() -> tuple[Producer, Store]:
        app, store, changelog = App(), Store(), Changelog()
        changelog.add("t-changelog", 0, b"a", b"0", store)  # overwritten before any flush: never sent
        changelog.add("t-changelog", 0, b"b", b"1", store)
        changelog.add("t-changelog", 0, b"a", b"2", store)

        async def second_agent() -> None:
            await asyncio.sleep(0)
            changelog.add("t-changelog", 0, b"a", b"3", store)  # written after the first two
            await changelog.flush(app)  # type: ignore[arg-type]
            # it returns only once its own record is in the producer's hands
            assert app.producer.records[-1][3] == b"3"

        await asyncio.gather(changelog.flush(app), second_agent())  # type: ignore[arg-type]
        for offset, delivery in enumerate(app.producer.deliveries):
            delivery.set_result(Sent("t-changelog", 0, offset))
        for _ in range(3):
            await asyncio.sleep(0)
        return app.producer, store

    producer, store = asyncio.run(run())
    assert [(key, value) for *_, key, value in producer.records] == [(b"b", b"1"), (b"a", b"2"), (b"a", b"3")]
    assert store.persisted == {TP("t-changelog", 0): 2}  # as Faust's own callback: recovery starts after it
    assert store.notes == 1  # once for the three acknowledgements: each note is a RocksDB write
