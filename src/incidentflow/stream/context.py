"""What every agent of the worker shares: the app, its topics, counters and the dead-letter path."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, cast

import faust
from faust.types import EventT, TableT

from incidentflow.config import Integrations, Settings
from incidentflow.domain.records import DeadLetterRecord
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.topics import Topics

log = logging.getLogger("incidentflow.worker")

# RocksDB's defaults (64 MiB memtables, three per table and partition, a 2 GiB block cache) are
# sized for a database server, not a worker beside production: these bound memory to tens of MiB.
ROCKSDB_OPTIONS = {"write_buffer_size": 8 * 1024**2, "max_write_buffer_number": 2, "block_cache_size": 64 * 1024**2,
                   "block_cache_compressed_size": 16 * 1024**2}  # fmt: skip


class DeadLetter(Exception):
    """Raised by a handler for a record it cannot use; the record goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Positions:
    """Makes sure no record of an input partition is skipped, whatever the consumer commits.

    Faust 0.15 can commit offsets of records that no agent processed when a rebalance interrupts
    fetching (our 3-worker correlation test lost a few hundred raw records that way, not every
    run). So every agent records, per input partition, the next offset it expects: in memory for
    every record, and in the `positions` table (recovered with the partition) at most once a
    second and whenever it reaches the end of what is in the partition. A record beyond the expected offset means records were skipped: the partition is read
    again from the expected offset. What is read twice is folded idempotently, and every stage is
    order-independent, so reading again is always safe; at most a second of records is re-read
    after a rebalance. The check runs for every record and after every rebalance (`rewind_assigned`).
    """

    table: TableT[bytes, bytes]
    expected: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (consumer generation, next offset expected)."""
    saved_at: dict[tuple[str, int], float] = field(default_factory=dict)
    rewound: dict[tuple[str, int], int] = field(default_factory=dict)

    async def check(self, app: faust.App, message: faust.types.Message) -> bool:
        """Runs before every record; True when the partition had to be read again from an earlier offset."""
        tp = (message.topic, message.partition)
        key = f"{message.topic}:{message.partition}".encode()
        generation = app.consumer_generation_id
        known = self.expected.get(tp)
        if known is None or known[0] != generation:
            # After a rebalance the partition may have been elsewhere: its owner saved its position.
            stored = self.table.get(key)
            candidates = [int(stored)] if stored else []
            expected = max([*candidates, *([known[1]] if known else [])], default=None)
        else:
            expected = known[1]
        offset = message.offset
        rewind = expected is not None and offset > expected and self.rewound.get(tp) != expected
        if rewind and expected is not None:
            log.warning("%s[%d]: offset %d follows %d, reading the partition again from %d",
                        message.topic, message.partition, offset, expected - 1, expected)  # fmt: skip
            self.rewound[tp] = expected
            await app.consumer.seek(faust.types.TP(message.topic, message.partition), expected)
        if expected is None or offset <= expected:
            nxt = max(offset + 1, expected or 0)
            self.expected[tp] = (generation, nxt)
            now = time.monotonic()
            if now - self.saved_at.get(tp, 0.0) >= 1.0 or nxt >= _highwater(app, message):
                self.table[key] = str(nxt).encode()
                self.saved_at[tp] = now
        else:
            self.expected[tp] = (generation, expected)
        return rewind

    async def rewind_assigned(self, consumer: Any) -> list[tuple[str, int]]:
        """Runs after every rebalance, once the consumer sought to the committed offsets: every
        assigned input partition whose committed offset is beyond the position its owners recorded
        is read again from that position. Returns the partitions it rewound."""
        rewound: list[tuple[str, int]] = []
        for tp in sorted(consumer.assignment()):
            stored = self.table.get(f"{tp.topic}:{tp.partition}".encode())
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001  # what perform_seek just sought to
            if stored is None or committed is None or int(stored) >= committed:
                continue
            log.warning("%s[%d]: committed offset %d is beyond the last recorded position %d: reading again from it",
                        tp.topic, tp.partition, committed, int(stored))  # fmt: skip
            await consumer.seek(tp, int(stored))
            rewound.append((tp.topic, tp.partition))
        return rewound


@dataclass
class Worker:
    """The worker's Faust app with its topics; built once by `create_worker`."""

    settings: Settings
    integrations: Integrations
    app: faust.App
    names: Topics
    metrics: WorkerMetrics
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    tables: dict[str, TableT[bytes, bytes]] = field(default_factory=dict)
    positions: Positions | None = None

    def __post_init__(self) -> None:
        self.positions = Positions(self.table("positions", "next offset expected by topic:partition"))

    def topic(self, name: str) -> faust.TopicT:
        if name not in self.topics:
            self.topics[name] = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                partitions=self.settings.partitions,
            )  # fmt: skip
        return self.topics[name]

    def table(self, name: str, help_: str) -> TableT[bytes, bytes]:
        """A table of raw bytes (values are JSON of domain models), co-partitioned with the agent that writes it."""
        table: TableT[bytes, bytes] = self.app.Table(
            name, key_type=bytes, value_type=bytes, partitions=self.settings.partitions, help=help_,
            options=ROCKSDB_OPTIONS,
        )  # fmt: skip
        self.tables[name] = table
        return table

    async def send(self, topic: str, key: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        # Straight to the producer: Faust's Topic.send wraps every record in futures and sensor calls
        # that cost half again as much CPU per record (bench/README.md). Delivery is the same: the
        # commit of input offsets flushes this producer first.
        delivery = await self.app.producer.send(topic, key.encode(), data, partition=None, timestamp=None,
                                                headers=None)  # fmt: skip
        cast(asyncio.Future[object], delivery).add_done_callback(partial(_delivered, topic))

    async def handle(self, event: EventT[bytes], handler: Callable[[EventT[bytes]], Awaitable[str]]) -> None:
        """Run one record's handler; never lets a record fail silently or kill the agent.

        A DeadLetter (a record that can never be handled) and any unexpected error alike are
        written to the dead-letter topic with the record's origin and counted, because Faust acks
        a record whose agent raised and would never retry it.
        """
        message = event.message
        if self.positions is not None and await self.positions.check(self.app, message):
            self.metrics.rewinds.labels(message.topic).inc()
        try:
            outcome = await handler(event)
        except DeadLetter as error:
            await self.dead_letter(event, "invalid", error.reason)
            outcome = "deadlettered"
        except Exception as error:  # noqa: BLE001  # an agent must survive any record; the record is kept
            log.exception("unexpected error on %s[%d]@%d", message.topic, message.partition, message.offset)
            await self.dead_letter(event, "error", f"{type(error).__name__}: {error}")
            outcome = "error"
        self.metrics.processed.labels(message.topic, outcome).inc()

    async def dead_letter(self, event: EventT[bytes], kind: Literal["invalid", "error"], reason: str) -> None:
        message = event.message
        key, key_base64 = _text_or_base64(message.key)
        value, value_base64 = _text_or_base64(message.value)
        record = DeadLetterRecord(
            reason=reason,
            kind=kind,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp=int(message.timestamp * 1000) if message.timestamp else None,
            dead_lettered_at=datetime.now(UTC),
            key=key,
            key_base64=key_base64,
            value=value,
            value_base64=value_base64,
        )
        origin = f"{message.topic}:{message.partition}:{message.offset}"
        await self.send(self.names.deadletter, origin, record.model_dump_json())


def _delivered(topic: str, delivery: asyncio.Future[object]) -> None:
    """Runs when the broker answered a send: a record it refused after every retry is logged loudly."""
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("a record for %s was not delivered: %r", topic, delivery.exception())


def _highwater(app: faust.App, message: faust.types.Message) -> int:
    """The partition's end offset as the consumer last heard it (0 when unknown)."""
    try:
        return int(app.consumer.highwater(message.tp) or 0)
    except Exception:  # noqa: BLE001  # a hint only: unknown means "save now"
        return 0


def _text_or_base64(data: bytes | None) -> tuple[str | None, str | None]:
    """The bytes as text when they are UTF-8, else as base64 (second slot)."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode()
