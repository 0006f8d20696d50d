"""What every agent of the worker shares: the app, its topics, counters and the dead-letter path."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

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
class Worker:
    """The worker's Faust app with its topics; built once by `create_worker`."""

    settings: Settings
    integrations: Integrations
    app: faust.App
    names: Topics
    metrics: WorkerMetrics
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    tables: dict[str, TableT[bytes, bytes]] = field(default_factory=dict)

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
        await self.topic(topic).send(key=key.encode(), value=data)

    async def handle(self, event: EventT[bytes], handler: Callable[[EventT[bytes]], Awaitable[str]]) -> None:
        """Run one record's handler; never lets a record fail silently or kill the agent.

        A DeadLetter (a record that can never be handled) and any unexpected error alike are
        written to the dead-letter topic with the record's origin and counted, because Faust acks
        a record whose agent raised and would never retry it.
        """
        message = event.message
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


def _text_or_base64(data: bytes | None) -> tuple[str | None, str | None]:
    """The bytes as text when they are UTF-8, else as base64 (second slot)."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode()
