"""What every agent of the worker shares: the app, its topics, counters and the dead-letter path."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.topics import Topics

log = logging.getLogger("incidentflow.worker")


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
    tables: dict[str, faust.TableT] = field(default_factory=dict)

    def topic(self, name: str) -> faust.TopicT:
        if name not in self.topics:
            self.topics[name] = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                partitions=self.settings.partitions,
            )  # fmt: skip
        return self.topics[name]

    async def send(self, topic: str, key: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        await self.topic(topic).send(key=key.encode(), value=data)

    async def handle(self, event: EventT, handler: Callable[[EventT], Awaitable[str]]) -> None:
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

    async def dead_letter(self, event: EventT, kind: str, reason: str) -> None:
        message = event.message
        record: dict[str, Any] = {
            "reason": reason,
            "kind": kind,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
            "dead_lettered_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **_text_or_base64("key", message.key),
            **_text_or_base64("value", message.value),
        }
        key = f"{message.topic}:{message.partition}:{message.offset}"
        await self.send(self.names.deadletter, key, json.dumps(record))


def _text_or_base64(name: str, data: bytes | None) -> dict[str, str | None]:
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode()}
