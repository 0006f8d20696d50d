"""How far a worker's consumer group is behind its input topics; used by `incidentflow replay`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from incidentflow.runtime.harness import Runtime

log = logging.getLogger("incidentflow.replay")


@dataclass(frozen=True)
class Lag:
    """Records of each input topic that the group has not committed yet."""

    done: Mapping[str, int]
    total: Mapping[str, int]

    @property
    def behind(self) -> int:
        return sum(self.total[t] - self.done[t] for t in self.total)


class LagReader:
    """Reads how far consumer groups are behind, over one admin client and one consumer kept open
    between reads (a poll that opens its own clients spends most of its time connecting)."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.partitions: dict[tuple[str, ...], list[TopicPartition]] = {}

    async def __aenter__(self) -> LagReader:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self, group: str, topics: list[str]) -> Lag:
        committed = await self.admin.list_consumer_group_offsets(group)
        partitions = self.partitions.get(tuple(topics))
        if partitions is None:
            described = await self.admin.describe_topics(topics)
            partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
            missing = set(topics) - {tp.topic for tp in partitions}
            if missing:
                raise RuntimeError(f"topics without partitions: {', '.join(sorted(missing))}")
            self.partitions[tuple(topics)] = partitions
        ends = await self.consumer.end_offsets(partitions)
        starts = await self.consumer.beginning_offsets(partitions)
        done = dict.fromkeys(topics, 0)
        total = dict.fromkeys(topics, 0)
        for tp in partitions:
            meta = committed.get(tp)
            total[tp.topic] += ends[tp] - starts[tp]
            done[tp.topic] += max(0, (meta.offset if meta and meta.offset >= 0 else starts[tp]) - starts[tp])
        return Lag(done, total)


async def group_lag(bootstrap: str, group: str, topics: list[str]) -> Lag:
    """How far `group` is behind on `topics`, read once."""
    async with LagReader(bootstrap) as reader:
        return await reader.lag(group, topics)


def register(worker: Runtime, exit_when_caught_up: bool) -> None:
    """Print a progress bar each second; once nothing is left twice in a row, say so (and stop, if asked)."""
    names = worker.names
    topics = [names.raw, names.alerts, names.contributions]
    seen_zero = 0

    @worker.app.timer(1.0)  # type: ignore[untyped-decorator]  # faust declares no types for timer
    async def progress() -> None:
        nonlocal seen_zero
        lag = await group_lag(worker.settings.kafka_bootstrap, worker.settings.app_id, topics)
        raw_done, raw_total = lag.done[names.raw], lag.total[names.raw]
        width = 30
        filled = int(width * raw_done / raw_total) if raw_total else width
        detail = ", ".join(f"{t.rsplit('.', 1)[-1]} {lag.done[t]}/{lag.total[t]}" for t in topics)
        sys.stderr.write(f"\rreplay [{'#' * filled}{'.' * (width - filled)}] {detail}    ")
        sys.stderr.flush()
        seen_zero = seen_zero + 1 if lag.behind == 0 and raw_total == raw_done else 0
        if seen_zero == 2:
            sys.stderr.write("\n")
            log.warning("caught up: %d raw records replayed into %s.*", raw_total, names.namespace)
            if exit_when_caught_up:
                os.kill(os.getpid(), signal.SIGTERM)  # the Faust worker's own graceful shutdown
