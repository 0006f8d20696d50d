"""Notices an input partition with records waiting and none handled for half a minute, says what
Faust's consumer and aiokafka think of it, and has the worker read it again from there.

A worker that silently stops consuming is the worst thing a stream processor can do: records
fetched that never reach the agent, with no later record to show the gap (`Positions`), would
never be handled, the consumer lag the only sign. The caller seeks the
partition back to the next offset to handle (reading again is always safe: folds are
idempotent). `kill -USR1` on the worker writes every task's stack to its log.

Where a partition ends is asked of the broker (`BrokerOffsets`), not of the consumer: the consumer
knows the end of a partition only once it has fetched it since the last rebalance, and a partition
assigned and never fetched, or never committed by the group, was invisible to this watch (and to
the lag gauge) while its records waited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("incidentflow.worker")

STALL_SECONDS = 30.0
OFFSETS_TIMEOUT_SECONDS = 5.0

Bounds = Mapping[Any, tuple[int, int]]
"""tp -> (first offset still in the log, end offset), as the broker answered."""


@dataclass
class BrokerOffsets:
    """The first and end offsets of partitions as the broker has them now, asked outside the consumer
    group by a consumer of its own (one ListOffsets request per call)."""

    bootstrap: str
    timeout_seconds: float = OFFSETS_TIMEOUT_SECONDS
    last: dict[Any, tuple[int, int]] = field(default_factory=dict)
    """The last answer, by partition: what the lag gauge falls back on for a partition not fetched yet."""
    _consumer: AIOKafkaConsumer | None = None

    async def read(self, tps: Iterable[Any]) -> Bounds:
        """The bounds of these partitions; empty when the broker did not answer in time (the caller
        falls back on what the consumer knows)."""
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        if not partitions:
            return {}
        try:
            consumer = self._consumer
            if consumer is None:
                # Kept before it starts, so that a start that fails is stopped too (not leaked each round).
                consumer = self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                                             enable_auto_commit=False, client_id="incidentflow-offsets")  # fmt: skip
                await asyncio.wait_for(consumer.start(), self.timeout_seconds)
            starts = await asyncio.wait_for(consumer.beginning_offsets(partitions), self.timeout_seconds)
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), self.timeout_seconds)
        except Exception as error:  # noqa: BLE001  # the broker away or slow: this round goes without
            log.info("end offsets not known this round: %r", error)
            await self.stop()
            return {}
        found = {faust.types.TP(p.topic, p.partition): (starts[p], ends[p]) for p in partitions}
        self.last.update(found)
        return found

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), self.timeout_seconds)
            except Exception:  # noqa: BLE001  # closing a consumer of a broker that is away
                log.debug("closing the offsets consumer failed", exc_info=True)


@dataclass
class StallWatch:
    """Called every few seconds with the worker's progress; names each stalled partition at most
    once per `seconds`, with the offset to read it again from."""

    seconds: float = STALL_SECONDS
    waiting: dict[Any, tuple[int, float]] = field(default_factory=dict)
    """tp -> (next offset to handle, since when it has not moved while records wait)."""
    warned: dict[Any, float] = field(default_factory=dict)

    def check(self, app: faust.App, completed: dict[tuple[str, int], tuple[int, int]], bounds: Bounds | None = None,
              now: float | None = None) -> list[tuple[Any, int, str]]:  # fmt: skip
        """(partition, next offset to handle, warning) of each partition stalled now (the warning is logged).

        `bounds` are the broker's offsets of the assigned partitions; where one is missing, the
        consumer's end offset stands in and a partition it has not fetched is not judged."""
        now = time.monotonic() if now is None else now
        consumer: Any = app.consumer  # Faust's private bookkeeping is read below
        generation = app.consumer_generation_id
        found: list[tuple[Any, int, str]] = []
        if getattr(app, "rebalancing", False) or _safe(lambda: app.flow_control.is_active()) is not True:
            self.waiting.clear()  # a rebalance or recovery stops every partition: not a stall
            return found
        seen = set()
        for tp in sorted(app.assignor.assigned_actives()):
            if tp.topic.endswith("-changelog"):
                continue
            seen.add(tp)
            start, end = (bounds or {}).get(tp) or (None, consumer_end_offset(consumer, tp))
            handled = completed.get((tp.topic, tp.partition))
            nxt = handled[1] if handled and handled[0] == generation else consumer._committed_offset.get(tp)  # noqa: SLF001
            if nxt is None:
                nxt = start  # never committed: the consumer starts at the first offset in the log
            if end is None or nxt is None or nxt >= end:
                self.waiting.pop(tp, None)
                continue
            before = self.waiting.get(tp)
            if before is None or before[0] != nxt:
                self.waiting[tp] = (nxt, now)
                continue
            if now - before[1] >= self.seconds and now - self.warned.get(tp, -self.seconds) >= self.seconds:
                self.warned[tp] = now
                message = (f"{tp.topic}[{tp.partition}]: {end - nxt} records waiting and none handled for "
                           f"{now - before[1]:.0f} s (next offset {nxt}, end {end}; {describe(app, tp)}): "
                           f"reading again from {nxt}")  # fmt: skip
                log.warning("%s", message)
                found.append((tp, nxt, message))
        for gone in set(self.waiting) - seen:
            self.waiting.pop(gone, None)
        return found


def describe(app: faust.App, tp: Any) -> str:
    """What Faust's consumer and the aiokafka consumer under it hold about one partition."""
    consumer: Any = app.consumer
    facts = {
        "app flow active": _safe(lambda: app.flow_control.is_active()),
        "consumer flow active": getattr(consumer, "flow_active", "?"),
        "rebalancing": getattr(app, "rebalancing", "?"),
        "in recovery": getattr(app, "in_recovery", "?"),
        "faust active": _safe(lambda: tp in (consumer._active_partitions or ())),  # noqa: SLF001
        "faust paused": _safe(lambda: tp in consumer._paused_partitions),  # noqa: SLF001
        "faust buffered": _safe(lambda: tp in consumer._buffered_partitions),  # noqa: SLF001
        "committed": _safe(lambda: consumer._committed_offset.get(tp)),  # noqa: SLF001
        "consumer's end offset": _safe(lambda: consumer_end_offset(consumer, tp)),
        "acked": _safe(lambda: _span(consumer._acked.get(tp) or [])),  # noqa: SLF001
        "gaps": _safe(lambda: sorted((i.begin, i.end - 1) for i in consumer._gap.get(tp) or ())[:5]),  # noqa: SLF001
        "faust read offset": _safe(lambda: consumer._read_offset.get(tp)),  # noqa: SLF001
        "aiokafka position": _safe(lambda: _aiokafka_state(consumer, tp)),
        "aiokafka buffered": _safe(lambda: _aiokafka_buffered(consumer, tp)),
    }
    return ", ".join(f"{name}: {value}" for name, value in facts.items())


def _aiokafka_state(consumer: Any, tp: Any) -> str:
    inner = consumer._thread._consumer  # noqa: SLF001  # read across threads: a diagnostic only
    assignment = inner._subscription.subscription.assignment  # noqa: SLF001
    state = assignment.state_value(tp)
    return f"{state._position} ({state._status.name.lower()}{', paused' if state._paused else ''})"


def _aiokafka_buffered(consumer: Any, tp: Any) -> str:
    """What aiokafka's fetcher holds fetched and not yet taken for the partition: it fetches a
    partition again only once that is taken."""
    fetcher = consumer._thread._consumer._fetcher  # noqa: SLF001  # read across threads: a diagnostic only
    held = fetcher._records.get(tp)  # noqa: SLF001
    if held is None:
        return f"nothing (of {len(fetcher._records)} partitions holding records)"  # noqa: SLF001
    records = getattr(held, "_partition_records", None)
    if records is None:
        return type(held).__name__
    return f"{type(held).__name__} from offset {getattr(records, 'next_fetch_offset', '?')}"


def _span(offsets: list[int]) -> str:
    return f"{len(offsets)} ({min(offsets)}..{max(offsets)})" if offsets else "0"


def consumer_end_offset(consumer: Any, tp: Any) -> int | None:
    try:
        end = consumer.highwater(tp)
    except Exception:  # noqa: BLE001  # not fetched yet
        return None
    return int(end) if end is not None else None


def _safe(read: Any) -> object:
    try:
        return read()
    except Exception as error:  # noqa: BLE001  # a diagnostic never fails the worker
        return f"? ({type(error).__name__})"
