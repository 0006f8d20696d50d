"""The gateway's Kafka producer: a 202 is answered only after this returns."""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

log = logging.getLogger(__name__)

# After these the producer's idempotence state is broken for good (for example batches that
# expired while the broker was away left a gap in its sequence numbers): only a new producer,
# with a new producer id, can publish again.
FATAL = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, InvalidProducerIdMapping, ProducerFenced)


@lru_cache(maxsize=4096)
def _murmur2(key: bytes) -> int:
    return int(murmur2(key))


def partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (Kafka's murmur2 of the key), with the hash of recent keys kept:
    aiokafka's murmur2 is pure Python, and an incident's events share their key."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[(_murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


class PublishError(Exception):
    """Kafka did not acknowledge the record in time; the gateway answers 503."""


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Return only once the record is acknowledged by all in-sync replicas."""

    async def ready(self) -> bool:
        """True when Kafka answers now."""

    async def close(self) -> None: ...


class KafkaPublisher:
    """acks=all on an idempotent producer, and a bound on how long a publish may take.

    aiokafka's own defaults are acks=1 and no idempotence, so both are set explicitly. The
    producer's request timeout is shorter than the bound, so a record that cannot be delivered
    expires in the producer instead of being sent after the client was already told 503.
    """

    def __init__(self, bootstrap: str, timeout_seconds: float) -> None:
        self._bootstrap = bootstrap
        self._timeout = timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._stopping: set[asyncio.Future[None]] = set()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=1,
                    request_timeout_ms=max(1000, int(self._timeout * 1000 * 0.8)),
                    max_request_size=2 * 1024 * 1024,
                    compression_type=None,
                    partitioner=partitioner,
                )
                try:
                    await asyncio.wait_for(producer.start(), self._timeout)
                except (TimeoutError, KafkaError, OSError) as error:
                    await producer.stop()
                    raise PublishError(f"Kafka is unreachable: {type(error).__name__}") from None
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            # One deadline for starting, queueing (which waits for metadata) and the ack together.
            async with asyncio.timeout(self._timeout):
                producer = await self._started()
                future = await producer.send(topic, value=value, key=key)
                await future
        except FATAL as error:
            self._retire()
            raise PublishError(f"Kafka refused the record ({type(error).__name__}); producer restarted") from None
        except (TimeoutError, KafkaError) as error:
            raise PublishError(f"Kafka did not acknowledge in time: {type(error).__name__}") from None

    def _retire(self) -> None:
        """Drop the current producer; the next publish starts a new one. Stopping it runs in the background."""
        old, self._producer = self._producer, None
        if old is not None:
            log.warning("restarting the Kafka producer after a fatal idempotence error")
            task = asyncio.ensure_future(asyncio.wait_for(old.stop(), 30))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def ready(self) -> bool:
        try:
            producer = await self._started()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), min(self._timeout, 2.0))
        except (PublishError, TimeoutError, KafkaError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
