"""The runtime every stage stands on: the Faust app, its topics and tables, batches, sends and dead letters.

`Runtime` holds the pieces of the harness (positions, commits, changelog, outbox, broker offsets)
and delegates to them; `agent` runs a product stage (runtime/tables.py, `Stage`) over its topics.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, cast

import faust
from aiokafka.errors import KafkaError
from faust.streams import _current_event as _CURRENT_EVENT  # what Faust's tables read: current_event()
from faust.types import EventT, Message, StreamT, TableT

from incidentflow.config import Integrations, Settings
from incidentflow.domain.records import DeadLetterRecord
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.runtime import store
from incidentflow.runtime.batches import Handover, Item
from incidentflow.runtime.changelog import Changelog, aiokafka_producer
from incidentflow.runtime.cloudevents import CloudEventHeaders
from incidentflow.runtime.commits import Commits
from incidentflow.runtime.membership import MEMBERSHIP
from incidentflow.runtime.packed import NotPacked, Outbox, Record, partition_of, unpack
from incidentflow.runtime.pauses import PauseWatch
from incidentflow.runtime.positions import GapReader, GapUnreadable, Positions
from incidentflow.runtime.recovery import BulkLoad
from incidentflow.runtime.stall import BrokerOffsets
from incidentflow.runtime.tables import DeadLetter, FaustTable, Stage, Where
from incidentflow.topics import Topics

log = logging.getLogger("incidentflow.worker")

# Per database (one per table and partition): memtables of 8 MiB, at most two. The block cache and
# the memtables' total are one budget shared by every database (`runtime/store.py`).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 1024**2,
}  # Faust's own cache per database, unused: replaced by the shared one


BATCH_MAX = 4000
"""Most records an agent takes at once (a worker with a backlog): what a batch costs whatever its size
(Faust's stream, the flush, the commit, a key written by many records) is paid once for all of them."""
BATCH_WITHIN_SECONDS = 0.05
"""Longest an agent waits for a batch to fill before it handles what it has (the latency it may add)."""
TURN_SECONDS = 0.05
"""Longest a stage handles records before it lets the event loop run the rest of the worker (see `Runtime._run`)."""


class RawSchema(faust.Schema[bytes, bytes]):
    """The schema of every topic a stage reads: the record's key and value as Kafka holds them (every
    stage parses its own), handed over as they are. It is what Faust's schema does for `bytes` with
    the `raw` codec (keys and values unchanged, None included), without its serializer registry's
    look-ups for every record, which every record of every stage pays."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: faust.types.AppT, **_: Any) -> Callable[..., Awaitable[EventT[bytes]]]:
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = False) -> EventT[bytes]:
            return create_event(message.key, message.value, message.headers, message)

        return decode


Handler = Callable[[Record], Awaitable[str]]
"""What an agent runs for each record (or item of a packed record) it takes; returns the outcome counted."""
Finish = Callable[[], Awaitable[None]]
"""What an agent runs once its batch's records are handled, before their writes are flushed."""
Begin = Callable[[], None]
"""What an agent runs before a batch: drops what an earlier batch kept and never finished (one cut
short by a rebalance or a stop must not write, later, into a partition that may be another's)."""


@dataclass(frozen=True, slots=True)
class Place:
    """Where a record being handled lives (`Context.here`): its partition, and the event Faust's tables read."""

    partition: int
    event: EventT[bytes]


@dataclass
class Runtime:
    """The worker's Faust app with its topics and tables; built once by `runtime.create`."""

    settings: Settings
    integrations: Integrations
    app: faust.App
    names: Topics
    metrics: WorkerMetrics
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    tables: dict[str, TableT[bytes, bytes]] = field(default_factory=dict)
    positions: Positions | None = None
    gaps: GapReader = field(init=False)
    offsets: BrokerOffsets = field(init=False)
    outbox: Outbox = field(init=False)
    outbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    direct: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    """(topic, key, value) of the records sent to other topics than the internal ones, not flushed yet."""
    _processed: dict[tuple[str, str], Any] = field(default_factory=dict)
    _tally: dict[tuple[str, str], int] = field(default_factory=dict)
    """Records handled by topic and outcome since the counters were last told (`_tell_counts`)."""
    _turn_ends: float = 0.0
    """When the stage handling records should let the event loop run the rest of the worker."""
    packed: frozenset[str] = field(init=False)
    """The internal topics, whose records are packed (see runtime/packed.py)."""
    changelog: Changelog = field(default_factory=Changelog)
    handover: Handover = field(default_factory=Handover)
    """Takes what each batch wrote to the producer while the next is handled (runtime/batches.py)."""
    commits: Commits = field(default_factory=Commits)
    bulk_load: BulkLoad = field(init=False)
    headers: CloudEventHeaders = field(default_factory=lambda: CloudEventHeaders("/incidentflow", {}))
    """The CloudEvents headers of the records it sends to the topics they name."""
    pauses: PauseWatch | None = None
    """Stops the worker before a batch's writes when it stood still past its session (runtime/pauses.py)."""

    def __post_init__(self) -> None:
        self.positions = Positions(self.table("positions", "next offset expected by topic:partition"))
        self.gaps = GapReader(self.settings.kafka_bootstrap)
        self.offsets = BrokerOffsets(self.settings.kafka_bootstrap)
        self.bulk_load = BulkLoad(self.settings.kafka_bootstrap, self.tables)
        self.outbox = Outbox(self.settings.partitions)
        self.packed = frozenset(self.names.internal)

    def topic(self, name: str) -> faust.TopicT:
        if name not in self.topics:
            self.topics[name] = self.app.topic(name, schema=RawSchema(), partitions=self.settings.partitions)
        return self.topics[name]

    def table(self, name: str, help_: str) -> FaustTable:
        """A table of raw bytes (values are JSON of domain models), co-partitioned with the agent that writes it."""
        table: TableT[bytes, bytes] = self.app.Table(
            name, key_type=bytes, value_type=bytes, partitions=self.settings.partitions, help=help_,
            options=ROCKSDB_OPTIONS,
        )  # fmt: skip
        self.tables[name] = table
        return FaustTable(table, self.changelog, self.current_partition)

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value of `table` this worker holds, in any of its partitions (what a scrape exports)."""
        return iter(self.tables[table].data.items())

    def agent(self, stage: Stage) -> None:
        """Runs `stage` as an agent over its topics: batches, positions, dead letters and commits are the runtime's."""
        if len(stage.topics) == 1:
            source = self.topic(stage.topics[0])
        else:
            source = self.app.topic(*stage.topics, schema=RawSchema(), partitions=self.settings.partitions)

        async def run(stream: StreamT[bytes]) -> None:
            await self.consume(stream, stage.handle, stage.finish, stage.begin)

        run.__doc__ = type(stage).__doc__
        self.app.agent(source, name=stage.name)(run)

    @property
    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    @staticmethod
    def current_partition() -> int | None:
        """The partition of the record being handled (None outside a record)."""
        found = _CURRENT_EVENT.get(None)
        event = found() if found is not None else None
        return int(event.message.partition) if event is not None else None

    def here(self) -> Place:
        event = self.current_event()
        if event is None:
            raise RuntimeError("here() is asked only while a record is handled")
        return Place(event.message.partition, event)

    async def send(self, topic: str, key: str, value: str | bytes) -> None:
        """Sends a record when the batch being handled is done (`flush_outbox`): to an internal topic
        packed with the others for its partition, to any other topic as a record of its own."""
        data = value.encode() if isinstance(value, str) else value
        if topic in self.packed:
            self.outbox.add(topic, key, data)
            return
        self.direct.append((topic, key.encode(), data))

    async def flush_outbox(self) -> None:
        """Puts every record sent so far into the hand-over to the producer, a record batch per topic
        and partition (runtime/batches.py). One flush at a time (agents share the outbox): records
        of a topic and partition reach the producer in the order they were sent, whichever agent's
        flush takes them."""
        async with self.outbox_lock:
            if not self.direct and not self.outbox.pending:
                return
            direct, self.direct = self.direct, []
            producer = aiokafka_producer(self.app)
            groups: dict[tuple[str, int], list[Item]] = {}
            counts: dict[str, int] = {}
            for topic, key, value in direct:
                if topic not in counts:  # as the producer's own send: the topic's metadata first
                    await producer.client._wait_on_metadata(topic)  # noqa: SLF001
                    counts[topic] = len(producer.client.cluster.partitions_for_topic(topic))
                partition = partition_of(key, counts[topic])  # the producer's default partitioner
                groups.setdefault((topic, partition), []).append((key, value, self.headers.of(topic, key, value)))
            for topic, partition, key, value in self.outbox.take():
                groups.setdefault((topic, partition), []).append((key, value, None))
            await self.handover.put(producer, [(topic, partition, items, partial(_delivered, topic))
                                               for (topic, partition), items in groups.items()])  # fmt: skip

    async def consume(
        self, stream: StreamT[bytes], handler: Handler, finish: Finish | None = None, begin: Begin | None = None
    ) -> None:
        """An agent's body: takes its records in batches and handles each (`handle_batch`)."""
        # StreamT declares no take_events, which Stream (0.15) has
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):  # type: ignore[attr-defined]
            await self.handle_batch(events, handler, finish, begin)

    @staticmethod
    def current_event() -> EventT[bytes] | None:
        """The record being handled: table reads and writes go to its partition."""
        found = _CURRENT_EVENT.get(None)
        return found() if found is not None else None

    @staticmethod
    def acting_for(where: Where) -> _ActingFor:
        """Within it, table reads and writes go to the partition of `event` (a batch's `finish`
        writing back what its records changed)."""
        return _ActingFor(cast(Place, where).event)

    async def handle(self, event: EventT[bytes], handler: Handler) -> None:
        """Run one record's handler, after those of any records skipped before it (see `Positions`)."""
        await self.handle_batch([event], handler)

    async def handle_batch(
        self,
        events: Sequence[EventT[bytes]],
        handler: Handler,
        finish: Finish | None = None,
        begin: Begin | None = None,
    ) -> None:
        """Runs for every batch an agent takes: `begin`, each record's handler in order, after those
        of any records skipped before it (see `Positions`), then `finish`, which writes what the
        handler kept for the whole batch. Once it returns, every record the batch wrote is in the
        hand-over to the producer and `completed` covers each record handled; a commit flushes the
        producer, and with it the hand-over, first, so that Faust's acks of the batch, and the
        commit after them, cover only what is done."""
        if begin is not None:
            begin()
        positions = self.positions
        done: dict[tuple[str, int], int] = {}
        for event in events:
            message = event.message
            _CURRENT_EVENT.set(weakref.ref(event))  # table reads and writes go to this record's partition
            if positions is None:
                await self._run_message(message, handler)
                continue
            first = positions.first_in_generation(self.app, message)
            skipped_from = positions.skipped_from(self.app, message)
            complete = skipped_from is None or await self._read_skipped(message, skipped_from, handler)
            await self._run_message(message, handler)
            if complete:
                if first or skipped_from is not None:
                    # at the first record nothing of the partition is acked yet in this generation
                    await self._commit_past(message, 0 if first or skipped_from is None else skipped_from)
                positions.handled(self.app, message)
                done[(message.topic, message.partition)] = message.offset + 1
        if finish is not None:
            await finish()
        if self.pauses is not None:
            self.pauses.check()  # a worker that may have lost its partitions writes nothing of the batch
        MEMBERSHIP.check(self.app.consumer_generation_id)  # nor one that lost them while they were assigned
        await self.flush_outbox()
        await self.changelog.flush(self.app, self.handover)
        generation = self.app.consumer_generation_id
        for tp, nxt in done.items():
            self.commits.completed[tp] = (generation, nxt)
        self._tell_counts()

    async def commit_handled(self, now: float | None = None) -> dict[Any, int]:
        """Runs every few seconds: see `Commits.commit_handled`."""
        return await self.commits.commit_handled(self.app, now)

    async def _read_skipped(self, message: Message, start: int, handler: Handler) -> bool:
        """Handles the records from `start` up to this one, read from the broker; False if it could not."""
        assert self.positions is not None  # noqa: S101  # only called with positions; for the type checker
        log.warning("%s[%d]: offset %d follows %d: reading the %d records in between from the broker",
                    message.topic, message.partition, message.offset, start - 1, message.offset - start)  # fmt: skip
        self.metrics.rewinds.labels(message.topic).inc()
        try:
            async for missed in self.gaps.read(message.topic, message.partition, start, message.offset):
                await self._run_message(missed, handler)
                self.positions.handled(self.app, missed)
        except (GapUnreadable, KafkaError) as error:
            # Not marked as handled: the next record of the partition finds the same gap and tries again.
            log.error("%s[%d]: could not read the skipped records: %s", message.topic, message.partition, error)
            return False
        return True

    async def _commit_past(self, message: Message, start: int) -> None:
        """Tells Faust's consumer that every record before this one was handled (`Positions` knows it:
        by an earlier owner, by this one, or just now from the broker), though not necessarily through
        it in this generation. It commits a partition only up to the first offset it has seen neither
        acked nor noted as a gap, so records skipped below the position an earlier owner recorded
        would hold the committed offset (and the lag) there until the next rebalance: seen in a broker
        restart, where the committed offset was behind the recorded position and Faust delivered
        records only from beyond it. Faust clamps the range to what follows its committed offset.
        The range must hold no offset Faust saw acked: a duplicate in its list of acked offsets
        makes every commit that follows advance by one record only."""
        consumer = getattr(self.app, "consumer", None)
        add_gap = getattr(consumer, "_add_gap", None)  # Faust's own bookkeeping of offsets that need no ack
        if add_gap is not None and message.offset > start:
            await add_gap(message.tp, start, message.offset - 1)

    async def _run_message(self, message: Message, handler: Handler) -> None:
        """Runs the handler for a record, or for each item of a packed one; a record on an internal
        topic that is not packed is dead-lettered whole."""
        if message.topic not in self.packed:
            await self._run(Record.of(message), handler)
            return
        try:
            items = unpack(message)
        except NotPacked as error:
            await self.dead_letter(Record.of(message), "invalid", f"not a packed record of {message.topic}: {error}")
            self._count(message.topic, "deadlettered")
            return
        for item in items:
            await self._run(item, handler)

    async def _run(self, message: Record, handler: Handler) -> None:
        """Never lets a record fail silently or kill the agent.

        A DeadLetter (a record that can never be handled) and any unexpected error alike are
        written to the dead-letter topic with the record's origin and counted, because Faust acks
        a record whose agent raised and would never retry it.
        """
        try:
            outcome = await handler(message)
        except DeadLetter as error:
            await self.dead_letter(message, "invalid", error.reason)
            outcome = error.outcome
        except Exception as error:  # noqa: BLE001  # an agent must survive any record; the record is kept
            if store.is_corruption(error):  # not the record's fault: the worker's own state cannot be read
                store.fail_on_corruption(error)
            log.exception("unexpected error on %s[%d]@%d", message.topic, message.partition, message.offset)
            await self.dead_letter(message, "error", f"{type(error).__name__}: {error}")
            outcome = "error"
        self._count(message.topic, outcome)
        await self._take_turns()

    async def _take_turns(self) -> None:
        """Lets the event loop run the rest of the worker once a stage has handled records for
        `TURN_SECONDS`. A handler seldom waits for anything, so a batch (thousands of records, a
        packed record of thousands of items) would otherwise hold the loop for as long as it takes,
        and the producer's sends, the fetcher's deliveries and every step of a commit (each a turn
        of the loop) with it: a worker with a backlog then committed nothing for seconds at a time.
        Stages share nothing a turn could leave half written: each writes its own tables, and the
        outbox and the changelog keep the order of what every stage wrote."""
        now = time.monotonic()
        if now >= self._turn_ends:
            await asyncio.sleep(0)
            self._turn_ends = time.monotonic() + TURN_SECONDS

    def _count(self, topic: str, outcome: str) -> None:
        key = (topic, outcome)
        self._tally[key] = self._tally.get(key, 0) + 1

    def _tell_counts(self) -> None:
        """Adds what `_count` tallied to `incidentflow_events_processed_total`, once per batch: each
        counter's increment takes a lock, and a batch handles thousands of records."""
        tally, self._tally = self._tally, {}
        for (topic, outcome), count in tally.items():
            counter = self._processed.get((topic, outcome))
            if counter is None:  # `labels` looks the child up under a lock: once per topic and outcome
                counter = self._processed[(topic, outcome)] = self.metrics.processed.labels(topic, outcome)
            counter.inc(count)

    async def dead_letter(self, message: Record, kind: Literal["invalid", "error"], reason: str) -> None:
        key, key_base64 = _text_or_base64(message.key)
        value, value_base64 = _text_or_base64(message.value)
        record = DeadLetterRecord(
            reason=reason,
            kind=kind,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            item=message.item,
            timestamp=int(message.timestamp * 1000) if message.timestamp else None,
            dead_lettered_at=datetime.now(UTC),
            key=key,
            key_base64=key_base64,
            value=value,
            value_base64=value_base64,
        )
        origin = f"{message.topic}:{message.partition}:{message.offset}" + (
            "" if message.item is None else f":{message.item}"
        )
        await self.send(self.names.deadletter, origin, record.model_dump_json())


class _ActingFor:
    """`Runtime.acting_for`: a class rather than a generator, since a batch's `finish` enters one for
    every key it writes back."""

    __slots__ = ("event", "token")

    def __init__(self, event: EventT[bytes]) -> None:
        self.event = event

    def __enter__(self) -> None:
        self.token = _CURRENT_EVENT.set(weakref.ref(self.event))

    def __exit__(self, *_: object) -> None:
        _CURRENT_EVENT.reset(self.token)


def _delivered(topic: str, delivery: asyncio.Future[Any], count: int) -> None:
    """Runs when the broker answered a batch: records it refused after every retry are logged loudly."""
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("%d records for %s were not delivered: %r", count, topic, delivery.exception())


def _text_or_base64(data: bytes | None) -> tuple[str | None, str | None]:
    """The bytes as text when they are UTF-8, else as base64 (second slot)."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode()
