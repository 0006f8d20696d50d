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
from collections.abc import Callable, Sequence
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
