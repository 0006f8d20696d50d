"""Positions: no record of an input partition is skipped, whatever the consumer commits or fetches."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import Message

from incidentflow.runtime.tables import Table

log = logging.getLogger("incidentflow.worker")


@dataclass
class Positions:
    """Makes sure no record of an input partition is skipped, whatever the consumer commits or fetches.

    Faust 0.15 can skip records: it commits offsets of records no agent processed when a rebalance
    interrupts fetching, and its fetch loop drops records after a seek while it still delivers a
    batch fetched before it. So every agent records, per input partition,
    the next offset it expects: in memory for every record, and in the `positions` table (recovered
    with the partition) at most once a second and whenever it reaches the end of what is in the
    partition. A record beyond the expected offset means records were skipped: the agent reads them
    itself, straight from the broker (`GapReader`), and handles them before that record. What is
    read twice is folded idempotently, and every stage is order-independent, so reading again is
    always safe; at most a second of records is read again after a rebalance.
    """

    table: Table
    expected: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (consumer generation, next offset expected)."""
    saved_at: dict[tuple[str, int], float] = field(default_factory=dict)

    def skipped_from(self, app: faust.App, message: Message) -> int | None:
        """The first offset skipped before this record, or None when nothing was skipped."""
        tp = (message.topic, message.partition)
        known = self.expected.get(tp)
        if known is None or known[0] != app.consumer_generation_id:
            # After a rebalance the partition may have been elsewhere: its owner saved its position.
            # When no worker ever recorded one, no record of the partition was handled yet: it is
            # expected from its first offset (the gap reader starts at the oldest record the broker
            # still has), for Faust can drop the first records it fetches there too.
            stored = self.table.get(f"{message.topic}:{message.partition}".encode())
            candidates = [int(stored)] if stored else []
            expected = max([*candidates, *([known[1]] if known else [])], default=0)
        else:
            expected = known[1]
        if message.offset > expected:
            return expected
        return None

    def first_in_generation(self, app: faust.App, message: Message) -> bool:
        """Whether this is the first record of its partition this worker sees since the last rebalance."""
        known = self.expected.get((message.topic, message.partition))
        return known is None or known[0] != app.consumer_generation_id

    def handled(self, app: faust.App, message: Message) -> None:
        """Records that every offset up to this record's has been handled."""
        tp = (message.topic, message.partition)
        known = self.expected.get(tp)
        nxt = max(message.offset + 1, known[1] if known else 0)
        self.expected[tp] = (app.consumer_generation_id, nxt)
        now = time.monotonic()
        if now - self.saved_at.get(tp, 0.0) >= 1.0 or nxt >= _highwater(app, message):
            self.table.set(f"{message.topic}:{message.partition}".encode(), str(nxt).encode())
            self.saved_at[tp] = now

    async def rewind_assigned(self, consumer: Any) -> list[tuple[str, int]]:
        """Runs after every rebalance, once the consumer sought to the committed offsets: every
        assigned input partition whose committed offset is beyond the position its owners recorded
        is read again from that position, so that its records are handled even if no new record
        comes (should Faust drop what it fetches again, the first record it delivers shows the gap).
        Returns the partitions it rewound."""
        rewound: list[tuple[str, int]] = []
        for tp in sorted(consumer.assignment()):
            stored = self.table.get(f"{tp.topic}:{tp.partition}".encode(), tp.partition)
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001  # what perform_seek just sought to
            if stored is None or committed is None or int(stored) >= committed:
                continue
            log.warning("%s[%d]: committed offset %d is beyond the last recorded position %d: reading again from it",
                        tp.topic, tp.partition, committed, int(stored))  # fmt: skip
            await consumer.seek_wait({tp: int(stored)})  # on the consumer's thread, not this one
            rewound.append((tp.topic, tp.partition))
        return rewound


class GapUnreadable(Exception):
    """The broker did not give the skipped records in time; the next record tries again."""


@dataclass
class GapReader:
    """Reads a range of offsets of one partition straight from the broker, outside the consumer group.

    Gaps are rare (rebalances), so each read opens its own short-lived consumer rather than keeping
    one beside every worker.
    """

    bootstrap: str
    timeout_seconds: float = 60.0

    async def read(self, topic: str, partition: int, start: int, end: int) -> AsyncIterator[Message]:
        """Every record of `topic[partition]` with `start <= offset < end`, in order."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="incidentflow-gap-reader")  # fmt: skip
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + self.timeout_seconds
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise GapUnreadable(f"{topic}[{partition}]: offsets {start} to {end - 1} not read in time")
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=500)
                for record in batch.get(tp, []):
                    if record.offset >= end:
                        return
                    yield Message(topic, partition, record.offset, record.timestamp / 1000, record.timestamp_type,
                                  record.headers, record.key, record.value, None, tp=faust.types.TP(topic, partition))  # fmt: skip
        finally:
            await consumer.stop()


def _highwater(app: faust.App, message: Message) -> int:
    """The partition's end offset as the consumer last heard it (0 when unknown)."""
    try:
        return int(app.consumer.highwater(message.tp) or 0)
    except Exception:  # noqa: BLE001  # a hint only: unknown means "save now"
        return 0
