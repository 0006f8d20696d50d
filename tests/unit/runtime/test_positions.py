"""A worker handles every offset of a partition once in order, whatever its consumer skips.

The consumer here is a list of the offsets Faust delivers; the broker a list of every record of
the partition. Skips and rebalances are the ones Faust 0.15 makes: a jump forward within a
generation, and a new generation that starts at a committed offset beyond what was handled.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, Message
from intervaltree import Interval, IntervalTree

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.runtime.harness import Runtime
from incidentflow.runtime.positions import GapUnreadable
from incidentflow.topics import Topics

TOPIC = "t.raw"


@dataclass
class FaustConsumer:
    """Faust's consumer: the ranges it is told need no ack (inclusive ends, as Faust's `_add_gap`)."""

    gaps: list[tuple[TP, int, int]] = field(default_factory=list)
    _acked: defaultdict[TP, list[int]] = field(default_factory=lambda: defaultdict(list))
    _acked_index: defaultdict[TP, set[int]] = field(default_factory=lambda: defaultdict(set))
    _gap: defaultdict[TP, IntervalTree] = field(default_factory=lambda: defaultdict(IntervalTree))
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)
    _commit_fut: asyncio.Future[None] | None = None
    assigned: set[TP] = field(default_factory=lambda: {TP(TOPIC, 0)})
    commits: list[dict[TP, int]] = field(default_factory=list)
    """What was committed to the group, in order; `refuse` makes every commit fail."""
    refuse: bool = False

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))

    def assignment(self) -> set[TP]:
        return self.assigned

    async def maybe_wait_for_commit_to_finish(self) -> bool:
        if self._commit_fut is None:
            return False
        await self._commit_fut
        return True

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        if self.refuse:
            return False
        self.commits.append(dict(offsets))
        return True


class Tables(dict[str, dict[bytes, bytes]]):
    """Faust's table manager: the tables by name, told of every commit."""

    def __init__(self) -> None:
        super().__init__()
        self.committed: list[dict[TP, int]] = []

    def on_commit(self, offsets: dict[TP, int]) -> None:
        self.committed.append(dict(offsets))


@dataclass
class Producer:
    flushes: int = 0

    async def flush(self) -> None:
        self.flushes += 1


@dataclass
class App:
    """What `Runtime` asks of the Faust app: tables (dicts here), the consumer and its generation."""

    consumer_generation_id: int = 1
    rebalancing: bool = False
    tables: Tables = field(default_factory=Tables)
    consumer: FaustConsumer = field(default_factory=FaustConsumer)
    producer: Producer = field(default_factory=Producer)

    def Table(self, name: str, **_: Any) -> dict[bytes, bytes]:  # noqa: N802  # Faust's name
        return self.tables.setdefault(name, {})


@dataclass
class Broker:
    """The partition as the broker has it; `fail` makes the next read fail once."""

    records: int
    reads: list[tuple[int, int]] = field(default_factory=list)
    fail: bool = False

    async def read(self, topic: str, partition: int, start: int, end: int) -> AsyncIterator[Message]:
        self.reads.append((start, end))
        if self.fail:
            self.fail = False
            raise GapUnreadable("broker away")
        for offset in range(start, min(end, self.records)):
            yield message(offset)


@dataclass
class Event:
    message: Message


def message(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", f"v{offset}".encode(), None, tp=TP(TOPIC, 0))


@dataclass
class Consumer:
    """A worker with a handler that notes the offsets it handles."""

    app: App
    broker: Broker
    handled: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.worker = Runtime(settings=Settings(), integrations=Integrations(by_name={}), app=self.app,  # type: ignore[arg-type]
                             names=Topics.of(Settings()), metrics=WorkerMetrics())  # fmt: skip
        self.worker.gaps = self.broker  # type: ignore[assignment]

    async def handler(self, msg: Message) -> str:
        self.handled.append(msg.offset)
        return "applied"

    def deliver(self, offsets: list[int]) -> None:
        async def run() -> None:
            for offset in offsets:
                await self.worker.handle(Event(message(offset)), self.handler)  # type: ignore[arg-type]

        asyncio.run(run())


def rewinds(consumer: Consumer) -> float:
    return (
        consumer.worker.metrics.registry.get_sample_value("incidentflow_offset_rewinds_total", {"topic": TOPIC}) or 0.0
    )


def test_records_skipped_within_a_generation_are_read_from_the_broker_before_the_next() -> None:
    app, broker = App(), Broker(records=10)
    consumer = Consumer(app, broker)
    consumer.deliver([0, 1, 2, 6, 7, 8, 9])
    assert consumer.handled == list(range(10))
    assert broker.reads == [(3, 6)]
    assert rewinds(consumer) == 1
    # Faust's consumer commits only past offsets it saw acked: it is told the ones read need no ack
    # (only those: 0..2 were acked through it, and an offset twice in its list slows every commit).
    assert app.consumer.gaps == [(TP(TOPIC, 0), 3, 5)]


def test_records_delivered_again_after_a_gap_are_handled_again_not_skipped() -> None:
    app, broker = App(), Broker(records=10)
    consumer = Consumer(app, broker)
    # Faust's own seek back to the committed offset re-delivers what was read from the broker.
    consumer.deliver([0, 1, 4, 2, 3, 4, 5])
    assert consumer.handled == [0, 1, 2, 3, 4, 2, 3, 4, 5]
    assert broker.reads == [(2, 4)]


def test_records_skipped_before_the_first_one_ever_handled_are_read_from_the_broker() -> None:
    app, broker = App(), Broker(records=30)
    consumer = Consumer(app, broker)
    # No worker recorded a position for the partition yet, and Faust delivers offset 22 first
    # (it dropped what it had fetched when it sought at the end of a rebalance).
    consumer.deliver([22, 23])
    assert consumer.handled == list(range(24))
    assert broker.reads == [(0, 22)]
    assert rewinds(consumer) == 1


def test_a_new_owner_starts_from_the_position_the_last_owner_saved() -> None:
    app, broker = App(), Broker(records=30)
    first = Consumer(app, broker)
    first.deliver(list(range(10)))  # the end is unknown here, so every position is saved
    # The partition moves (same store, as after recovery from the changelog); the group committed 20.
    app.consumer_generation_id = 2
    second = Consumer(app, broker)
    second.deliver([20, 21])
    assert second.handled == list(range(10, 22))
    assert broker.reads == [(10, 20)]
    # and the new owner's consumer may commit past all of it, whatever the group had committed
    assert app.consumer.gaps == [(TP(TOPIC, 0), 0, 19)]


def test_a_new_owner_delivered_records_from_below_the_recorded_position_lets_its_consumer_commit() -> None:
    app, broker = App(), Broker(records=30)
    Consumer(app, broker).deliver(list(range(10)))
    app.consumer_generation_id = 2
    second = Consumer(app, broker)
    # The group had committed 3 and Faust starts the new owner at 6: 3..5 were handled by the first
    # owner (its recorded position is 10), but the new owner's consumer never sees them acked.
    second.deliver([6, 7, 8, 9, 10])
    assert second.handled == [6, 7, 8, 9, 10]
    assert broker.reads == []
    assert app.consumer.gaps == [(TP(TOPIC, 0), 0, 5)]  # once, at the first record of the generation


def test_a_gap_the_broker_cannot_give_now_is_tried_again_at_the_next_record() -> None:
    app, broker = App(), Broker(records=10, fail=True)
    consumer = Consumer(app, broker)
    consumer.deliver([0, 1, 5, 6])
    assert consumer.handled == [0, 1, 5, 2, 3, 4, 5, 6]
    assert broker.reads == [(2, 5), (2, 6)]
    assert app.consumer.gaps == [(TP(TOPIC, 0), 2, 5)]  # only once they were read


def held_partition(committed: int, acked: list[int], delivered: int = 6) -> tuple[Consumer, TP]:
    """A worker that handled offsets 0..delivered-1, and Faust's bookkeeping as given."""
    app = App()
    consumer = Consumer(app, Broker(records=30))
    consumer.deliver(list(range(delivered)))
    tp = TP(TOPIC, 0)
    app.consumer._committed_offset[tp] = committed
    app.consumer._acked[tp] = list(acked)
    app.consumer._acked_index[tp] = set(acked)
    return consumer, tp


def commit_handled(consumer: Consumer, *seconds: float) -> list[dict[TP, int]]:
    """What the worker commits itself when its timer runs at these times."""
    return [asyncio.run(consumer.worker.commit_handled(now=second)) for second in seconds]


def test_a_commit_held_below_handled_records_is_committed_after_the_flush() -> None:
    consumer, tp = held_partition(committed=2, acked=[4, 5])  # 2 and 3 handled, never acked
    faust = consumer.app.consumer
    assert commit_handled(consumer, 0.0, 5.0) == [{}, {}]  # held for 5 s only: left to Faust
    assert commit_handled(consumer, 10.0) == [{tp: 6}]
    assert faust.commits == [{tp: 6}] and faust._committed_offset[tp] == 6
    assert consumer.app.producer.flushes == 1  # the records written on the way are in Kafka first
    assert consumer.app.tables.committed == [{tp: 6}]  # stores note it, as after Faust's commits
    # Faust's acks below the new offset could only hold it again: dropped.
    assert faust._acked[tp] == [] and faust._acked_index[tp] == set()
    assert faust._commit_fut is None  # Faust's own next commit does not wait on it


def test_a_held_commit_is_moved_whatever_holds_faust_back() -> None:
    # Faust never committed (None); its list has a duplicate; its gaps were never merged.
    never, tp = held_partition(committed=2, acked=[])
    never.app.consumer._committed_offset[tp] = None
    assert commit_handled(never, 0.0, 10.0) == [{}, {tp: 6}]
    duplicated, tp = held_partition(committed=2, acked=[2, 3, 3, 4, 5, 7])
    duplicated.app.consumer._gap[tp].addi(2, 9)
    assert commit_handled(duplicated, 0.0, 10.0) == [{}, {tp: 6}]
    assert duplicated.app.consumer._acked[tp] == [7]
    assert sorted(duplicated.app.consumer._gap[tp]) == [Interval(6, 9)]


def test_a_commit_that_creeps_below_what_was_done_10_s_ago_is_moved() -> None:
    # Faust moving its commit a record at a time (a duplicate in its acks) holds the lag up as well.
    consumer, tp = held_partition(committed=2, acked=[4, 5])
    faust = consumer.app.consumer
    for second, committed in ((0.0, 2), (5.0, 3)):
        faust._committed_offset[tp] = committed
        assert asyncio.run(consumer.worker.commit_handled(now=second)) == {}
    faust._committed_offset[tp] = 4
    assert asyncio.run(consumer.worker.commit_handled(now=10.0)) == {tp: 6}


def test_faust_keeping_up_a_commit_at_the_handled_offset_a_revoked_partition_or_a_rebalance_is_left_alone() -> None:
    consumer, tp = held_partition(committed=2, acked=[4, 5])
    faust = consumer.app.consumer
    assert asyncio.run(consumer.worker.commit_handled(now=0.0)) == {}  # done up to 6 at 0 s
    consumer.deliver([6, 7, 8])
    faust._committed_offset[tp] = 6  # Faust got there: the next mark is 9, from now on
    assert asyncio.run(consumer.worker.commit_handled(now=5.0)) == {}
    faust._committed_offset[tp] = 7
    assert asyncio.run(consumer.worker.commit_handled(now=12.0)) == {}  # 9 marked 7 s ago only
    caught_up, tp = held_partition(committed=6, acked=[])
    assert commit_handled(caught_up, 0.0, 60.0) == [{}, {}]
    revoked, tp = held_partition(committed=2, acked=[])
    revoked.app.consumer.assigned = set()
    assert commit_handled(revoked, 0.0, 60.0) == [{}, {}]
    rebalancing, tp = held_partition(committed=2, acked=[])
    rebalancing.app.rebalancing = True
    assert commit_handled(rebalancing, 0.0, 60.0) == [{}, {}]
    assert faust.commits == caught_up.app.consumer.commits == revoked.app.consumer.commits == []


def test_a_refused_commit_leaves_faust_as_it_was_and_is_tried_again() -> None:
    consumer, tp = held_partition(committed=2, acked=[4, 5])
    faust = consumer.app.consumer
    faust.refuse = True
    assert commit_handled(consumer, 0.0, 10.0) == [{}, {}]
    assert faust._committed_offset[tp] == 2 and faust._acked[tp] == [4, 5]
    faust.refuse = False
    assert commit_handled(consumer, 15.0) == [{tp: 6}]


def test_a_commit_waits_for_faust_s_commit_in_progress() -> None:
    consumer, tp = held_partition(committed=2, acked=[4, 5])
    faust = consumer.app.consumer
    assert commit_handled(consumer, 0.0) == [{}]

    async def run() -> dict[TP, int]:
        faust._commit_fut = asyncio.get_running_loop().create_future()  # Faust is committing
        task = asyncio.create_task(consumer.worker.commit_handled(now=10.0))
        await asyncio.sleep(0.01)
        assert faust.commits == [] and not task.done()
        faust._committed_offset[tp] = 4  # what Faust's commit did
        waited, faust._commit_fut = faust._commit_fut, None
        waited.set_result(None)
        return await task

    assert asyncio.run(run()) == {tp: 6}
    assert faust.commits == [{tp: 6}] and faust._commit_fut is None
