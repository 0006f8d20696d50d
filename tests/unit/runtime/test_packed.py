"""Items written to internal topics travel packed and come out as they went in, each a record of its own."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP, Message
from hypothesis import given
from hypothesis import strategies as st

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.runtime import packed
from incidentflow.runtime.harness import Runtime
from incidentflow.runtime.packed import NotPacked, Outbox, Record, unpack
from incidentflow.runtime.tables import DeadLetter
from incidentflow.topics import Topics
from tests.unit.runtime.test_positions import App

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def message(topic: str, partition: int, offset: int, key: bytes, value: bytes | None) -> Message:
    return Message(topic, partition, offset, 0.0, 0, None, key, value, None, tp=TP(topic, partition))


def sent_items(outbox: Outbox) -> dict[tuple[str, int], list[tuple[bytes, bytes]]]:
    """What comes out of the outbox's packed records, unpacked, by topic and partition."""
    found: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    for offset, (topic, partition, key, value) in enumerate(outbox.take()):
        items = unpack(message(topic, partition, offset, key, value))
        assert items[0].key == key  # a packed record is keyed by its first item
        found.setdefault((topic, partition), []).extend((item.key or b"", item.value or b"") for item in items)
    return found


@given(st.lists(st.tuples(st.sampled_from(["a.t", "b.t"]), st.text(), json_values), max_size=40))
def test_every_item_comes_out_once_in_its_keys_partition_in_write_order(
    writes: list[tuple[str, str, object]],
) -> None:
    outbox = Outbox(partitions=8)
    expected: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    for topic, key, value in writes:
        data = json.dumps(value, indent=1).encode()  # whitespace of its own, newlines included
        outbox.add(topic, key, data)
        partition = DefaultPartitioner()(key.encode(), list(range(8)), list(range(8)))  # the producer's choice
        expected.setdefault((topic, partition), []).append((key.encode(), data))
    found = sent_items(outbox)
    assert found.keys() == expected.keys()
    for where, items in expected.items():
        assert [(k, json.loads(v)) for k, v in found[where]] == [(k, json.loads(v)) for k, v in items]
    assert len(outbox) == 0  # taken


def test_a_large_batch_is_split_within_the_limits_of_a_record() -> None:
    outbox = Outbox(partitions=1)
    value = json.dumps({"pad": "x" * 1000}).encode()
    for i in range(2 * packed.MAX_ITEMS):
        outbox.add("t", f"k{i}", value)
    records = list(outbox.take())
    assert len(records) > 2
    assert all(len(v) <= packed.MAX_BYTES and v.count(b"\n") < packed.MAX_ITEMS for *_, v in records)
    keys = [item.key for n, r in enumerate(records) for item in unpack(message("t", 0, n, r[2], r[3]))]
    assert keys == [f"k{i}".encode() for i in range(2 * packed.MAX_ITEMS)]


@pytest.mark.parametrize(
    "value", [b"", None, b"not json", b"\xff\xfe binary", b'{"json": "of the wrong shape"}', b"[1, 2, 3]",
              b'"k"\t{}\nno tab on this line', b'42\t{"key": "not a string"}', b"not json\t{}"],
)  # fmt: skip
def test_a_record_that_is_not_packed_is_told_apart(value: bytes | None) -> None:
    with pytest.raises(NotPacked):
        unpack(message("t", 0, 0, b"poison", value))


def test_items_are_ordered_and_named_within_their_record() -> None:
    first, second = Record("t", 3, 7, b"k", b"{}", item=0), Record("t", 3, 7, b"k", b"{}", item=1)
    later = Record("t", 3, 8, b"k", b"{}")
    assert first.position < second.position < later.position
    assert (first.name, second.name, later.name) == ("3@7.0", "3@7.1", "3@8")


@dataclass
class Batch:
    items: list[tuple[bytes, bytes]] = field(default_factory=list)

    def append(self, *, key: bytes, value: bytes, timestamp: None, headers: Any) -> Any:
        self.items.append((key, value))
        return object()


@dataclass
class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(8))


@dataclass
class Client:
    cluster: Cluster = field(default_factory=Cluster)

    async def _wait_on_metadata(self, topic: str) -> None:
        return None


@dataclass
class Producer:
    """aiokafka's producer (under Faust's): accepts every batch at once."""

    records: list[tuple[str, bytes, bytes, int | None]] = field(default_factory=list)
    client: Client = field(default_factory=Client)

    def _ensure_producer(self) -> Producer:
        return self

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        self.records.extend((topic, key, value, partition) for key, value in batch.items)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
        return delivery


@dataclass
class Event:
    message: Message


def test_a_bad_item_is_dead_lettered_alone_and_a_record_not_packed_whole() -> None:
    settings = Settings()
    names = Topics.of(settings)
    app = App(producer=Producer())  # type: ignore[arg-type]
    worker = Runtime(settings=settings, integrations=Integrations(by_name={}), app=app,  # type: ignore[arg-type]
                    names=names, metrics=WorkerMetrics())  # fmt: skip
    handled: list[tuple[str, int | None, bytes | None]] = []

    async def handler(record: Record) -> str:
        if record.value == b'"bad"':
            raise DeadLetter("not a contribution")
        handled.append((record.name, record.item, record.key))
        await worker.send(names.incidents, "out", b"{}")  # a public topic: a record of its own
        return "applied"

    good = message(names.contributions, 0, 0, b"a", b'"a"\t{}\n"b"\t"bad"\n"c"\t{}')
    poison = message(names.contributions, 0, 1, b"poison", b"not packed")

    async def batch_then_commit() -> None:
        await worker.handle_batch([Event(good), Event(poison)], handler)  # type: ignore[list-item]
        await worker.handover.drained()  # as a commit does before it commits

    asyncio.run(batch_then_commit())

    assert handled == [("0@0.0", 0, b"a"), ("0@0.2", 2, b"c")]
    dead = [json.loads(v) for t, _, v, _ in app.producer.records if t == names.deadletter]  # type: ignore[attr-defined]
    assert [(d["offset"], d["item"], d["key"], d["value"]) for d in dead] == [
        (0, 1, "b", '"bad"'),
        (1, None, "poison", "not packed"),
    ]
    assert "not a packed record" in dead[1]["reason"]
    assert worker.commits.completed[(names.contributions, 0)] == (1, 2)  # both records done
