"""Records handed to the producer a batch per topic and partition, not one by one.

aiokafka's `send` costs, per record, its metadata and partition checks, a future, an accumulator
look-up and, on acknowledgement, the resolution of that future: about three quarters of the time
a worker spends producing (`bench/README.md`). The records a batch of input leaves (table
changelogs, packed internal records, output records) are all known when the batch is done, and
each goes to a partition known then, so they are appended to one record batch per topic and
partition (aiokafka's `create_batch`, whose encoding is compiled) and each batch is sent with one
future. Order within a partition is kept: a batch queues behind what the producer already holds
for that partition.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Item = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]
"""(key, value, headers) of one record."""
Delivered = Callable[[asyncio.Future[Any], int], None]
"""Called with a batch's delivery and how many records it holds (the first at the delivered offset)."""


async def send_batches(producer: Any, topic: str, partition: int, items: Sequence[Item], delivered: Delivered) -> None:
    """Hands `items`, in order, to `producer` (an `AIOKafkaProducer`) as record batches for one
    topic and partition; returns once every one is queued. A batch holds at least one record, so
    a record larger than the batch size goes alone."""
    batch, count = producer.create_batch(), 0
    for key, value, headers in items:
        if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
            await _send(producer, batch, topic, partition, count, delivered)
            batch, count = producer.create_batch(), 0
            batch.append(key=key, value=value, timestamp=None, headers=headers or [])  # the first always fits
        count += 1
    if count:
        await _send(producer, batch, topic, partition, count, delivered)


async def _send(producer: Any, batch: Any, topic: str, partition: int, count: int, delivered: Delivered) -> None:
    delivery = await producer.send_batch(batch, topic, partition=partition)
    delivery.add_done_callback(lambda done: delivered(done, count))


Group = tuple[str, int, Sequence[Item], Delivered]
"""(topic, partition, records in order, what to call when a batch of them is delivered: the same
for every group of a topic, since groups of one partition put one after the other may go out in
one batch)."""

HANDING_MAX = 50_000
"""Most records a `Handover` holds before `put` waits for the producer to take some."""


@dataclass
class Handover:
    """Hands record batches to the producer in the background, in the order they were put.

    aiokafka queues one batch per partition and sends one request per broker at a time: a batch for
    a partition that already has one waiting blocks until the request in flight is answered. A
    worker that waited there after every batch of input would stand idle for a broker round trip
    (hundreds of milliseconds for the large requests of the series and correlation stages); here
    the stages go on with their next batch meanwhile, and what they put while the producer waits
    goes out together once it can take more. `handed_over` returns once everything put before
    it was called is in the producer's hands: a commit's flush of the producer waits for it
    (runtime/install.py), so no offset is committed before the records its handling wrote are on
    their way, and what the stages put meanwhile does not hold the commit back (under a steady
    load the hand-over is never empty). `drained` waits until it is empty: a rebalance's flush,
    after the streams stopped. A hand-over that failed fails every `put`, `handed_over` and
    `drained` after it, so that nothing is committed past it, and calls `on_failure` (the worker
    stops, to start again from its committed offsets).
    """

    limit: int = HANDING_MAX
    queue: deque[tuple[Any, list[Group], int]] = field(default_factory=deque)
    held: int = 0
    """Records put and not yet in the producer's hands."""
    puts: int = 0
    """Puts so far (of at least one record)."""
    handed: int = 0
    """Puts so far whose records are all in the producer's hands (they are handed over in order)."""
    waiting: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    """(puts to wait for, the future of a `handed_over` waiting for them)."""
    failed: BaseException | None = None
    task: asyncio.Task[None] | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    on_failure: Callable[[Exception], None] | None = None

    def __post_init__(self) -> None:
        self.idle.set()
        self.room.set()

    async def put(self, producer: Any, groups: list[Group]) -> None:
        """Queues `groups` behind everything put before; waits only while the hand-over is full."""
        count = sum(len(items) for _, _, items, _ in groups)
        if not count:
            return
        while self.held >= self.limit and self.failed is None:
            self.room.clear()
            await self.room.wait()
        self._raise_failed()
        self.queue.append((producer, groups, count))
        self.held += count
        self.puts += 1
        self.idle.clear()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._hand_over(), name="incidentflow-handover")

    async def drained(self) -> None:
        """Returns once the hand-over is empty: every record put so far, and every one put while it
        waits, is in the producer's hands."""
        await self.idle.wait()
        self._raise_failed()

    async def handed_over(self) -> None:
        """Returns once every record put before this call is in the producer's hands (records put
        while it waits may still be held)."""
        self._raise_failed()
        if self.handed < self.puts:
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append((self.puts, waiter))
            await waiter
            self._raise_failed()

    def _wake(self) -> None:
        """Wakes every `handed_over` whose puts are all handed over (all of them after a failure)."""
        still = []
        for puts, waiter in self.waiting:
            if puts <= self.handed or self.failed is not None:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((puts, waiter))
        self.waiting = still

    def _raise_failed(self) -> None:
        if self.failed is not None:
            raise RuntimeError(f"records could not be handed to the producer: {self.failed!r}") from self.failed

    async def _hand_over(self) -> None:
        try:
            while self.queue:
                # Everything put so far, merged per partition in the order it was put: while the
                # producer waits for the broker, what the stages put meanwhile goes out together,
                # in as few batches as it fits, instead of one put per broker round trip.
                taken = list(self.queue)
                merged: dict[tuple[str, int], tuple[list[Item], Delivered]] = {}
                for _, groups, _ in taken:
                    for topic, partition, items, delivered in groups:
                        into = merged.setdefault((topic, partition), ([], delivered))[0]
                        into.extend(items)
                producer = taken[0][0]
                # Partitions apart, at once: each waits only for its own partition's earlier batch.
                await asyncio.gather(*(send_batches(producer, topic, partition, items, delivered)
                                       for (topic, partition), (items, delivered) in merged.items()))  # fmt: skip
                for _ in taken:
                    self.held -= self.queue.popleft()[2]
                self.handed += len(taken)
                self._wake()
                if self.held < self.limit:
                    self.room.set()
        except BaseException as error:  # noqa: BLE001  # kept: every later put and drained raises it
            self.failed = error
            self.room.set()
            self._wake()
            if not isinstance(error, Exception):
                raise
            if self.on_failure is not None:
                self.on_failure(error)
        finally:
            if not self.queue or self.failed is not None:
                self.idle.set()
