"""The hand-over to the producer: in the background, in order, and never past a failure."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from incidentflow.runtime.batches import Group, Handover


@dataclass
class Batch:
    items: list[bytes | None] = field(default_factory=list)

    def append(self, *, key: bytes, value: bytes | None, timestamp: None, headers: Any) -> Any:
        if len(self.items) >= 2:
            return None  # full: two records a batch
        self.items.append(value)
        return object()


@dataclass
class Producer:
    """aiokafka's producer, whose `send_batch` for a partition waits while that partition's earlier
    batch has not been taken by a request (`taken` releases one per partition)."""

    taken: dict[tuple[str, int], asyncio.Semaphore] = field(default_factory=dict)
    records: dict[tuple[str, int], list[bytes | None]] = field(default_factory=dict)
    fail_on: bytes | None = None

    def create_batch(self) -> Batch:
        return Batch()

    def gate(self, topic: str, partition: int) -> asyncio.Semaphore:
        return self.taken.setdefault((topic, partition), asyncio.Semaphore(0))

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        await self.gate(topic, partition).acquire()
        if self.fail_on in batch.items:
            raise ConnectionError("producer closed")
        self.records.setdefault((topic, partition), []).extend(batch.items)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
        return delivery


def groups(*records: tuple[str, int, list[bytes]]) -> list[Group]:
    return [(topic, partition, [(b"k", value, None) for value in values], lambda *_: None)
            for topic, partition, values in records]  # fmt: skip


def test_put_returns_before_the_producer_takes_the_records_and_drained_waits_for_them() -> None:
    async def run() -> None:
        producer, handover = Producer(), Handover()
        await handover.put(producer, groups(("a", 0, [b"1"]), ("b", 1, [b"x"])))
        await asyncio.sleep(0)  # the hand-over takes that put: a's batch waits for its partition
        await handover.put(producer, groups(("a", 0, [b"2"])))  # behind the first: same partition
        await handover.put(producer, groups(("a", 0, [b"3"]), ("b", 1, [b"y"])))
        assert handover.held == 5 and not producer.records  # the stage went on; nothing taken yet
        drained = asyncio.ensure_future(handover.drained())
        producer.gate("a", 0).release()
        await asyncio.sleep(0.01)
        assert producer.records == {("a", 0): [b"1"]} and not drained.done()  # b's first batch still waits
        producer.gate("b", 1).release()
        await asyncio.sleep(0.01)
        # the two puts made while the first waited go out together: one batch per partition
        producer.gate("a", 0).release()
        producer.gate("b", 1).release()
        await asyncio.wait_for(drained, 1)
        assert producer.records == {("a", 0): [b"1", b"2", b"3"], ("b", 1): [b"x", b"y"]} and handover.held == 0

    asyncio.run(run())


def test_put_waits_while_the_handover_is_full() -> None:
    async def run() -> None:
        producer, handover = Producer(), Handover(limit=2)
        await handover.put(producer, groups(("a", 0, [b"1", b"2"])))
        second = asyncio.ensure_future(handover.put(producer, groups(("a", 0, [b"3"]))))
        await asyncio.sleep(0.01)
        assert not second.done()  # two records held: at the limit
        producer.gate("a", 0).release()
        await asyncio.wait_for(second, 1)
        producer.gate("a", 0).release()
        await asyncio.wait_for(handover.drained(), 1)
        assert producer.records[("a", 0)] == [b"1", b"2", b"3"]

    asyncio.run(run())


def test_handed_over_waits_for_what_was_put_before_it_and_not_for_what_is_put_later() -> None:
    async def run() -> None:
        producer, handover = Producer(), Handover()
        await asyncio.wait_for(handover.handed_over(), 1)  # nothing put: at once
        await handover.put(producer, groups(("a", 0, [b"1"])))
        await asyncio.sleep(0)  # the hand-over takes that put: its batch waits for its partition
        waiting = asyncio.ensure_future(handover.handed_over())  # a commit: its records are in that put
        await asyncio.sleep(0)
        await handover.put(producer, groups(("a", 0, [b"2"])))  # the stages go on meanwhile
        await asyncio.sleep(0.01)
        assert not waiting.done()
        producer.gate("a", 0).release()  # the first put is in the producer's hands
        await asyncio.wait_for(waiting, 1)
        assert producer.records == {("a", 0): [b"1"]} and handover.held == 1  # the later put still held
        drained = asyncio.ensure_future(handover.drained())
        await asyncio.sleep(0.01)
        assert not drained.done()  # a rebalance's flush waits for that one too
        producer.gate("a", 0).release()
        await asyncio.wait_for(drained, 1)
        await asyncio.wait_for(handover.handed_over(), 1)

    asyncio.run(run())


def test_after_a_failed_handover_every_put_and_drained_fails() -> None:
    async def run() -> None:
        failures: list[Exception] = []
        producer, handover = Producer(fail_on=b"bad"), Handover(on_failure=failures.append)
        producer.gate("a", 0).release()
        await handover.put(producer, groups(("a", 0, [b"bad"])))
        waiting = asyncio.ensure_future(handover.handed_over())
        with pytest.raises(RuntimeError, match="could not be handed to the producer"):
            await asyncio.wait_for(handover.drained(), 1)  # a flush waiting on it fails: nothing is committed
        with pytest.raises(RuntimeError, match="could not be handed to the producer"):
            await asyncio.wait_for(waiting, 1)  # a commit's as well
        with pytest.raises(RuntimeError, match="could not be handed to the producer"):
            await handover.handed_over()
        with pytest.raises(RuntimeError):
            await handover.put(producer, groups(("a", 0, [b"later"])))
        assert not producer.records
        assert [str(error) for error in failures] == ["producer closed"]  # the worker is told: it stops

    asyncio.run(run())
