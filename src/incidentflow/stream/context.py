"""What every agent of the worker shares: the app, its topics, counters and the dead-letter path."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.streams import _current_event as _CURRENT_EVENT  # what Faust's tables read: current_event()
from faust.types import EventT, Message, StreamT, TableT

from incidentflow.config import Integrations, Settings
from incidentflow.domain.records import DeadLetterRecord
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.stream.packed import NotPacked, Outbox, Record, unpack
from incidentflow.stream.stall import BrokerOffsets
from incidentflow.topics import Topics

log = logging.getLogger("incidentflow.worker")

# Per database (one per table and partition): memtables of 8 MiB, at most two. The block cache and
# the memtables' total are one budget shared by every database (`stream/store.py`).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 1024**2,
}  # Faust's own cache per database, unused: replaced by the shared one


BATCH_MAX = 1000
"""Most records an agent takes at once: its per-record costs in Faust's stream are paid once per batch."""
BATCH_WITHIN_SECONDS = 0.05
"""Longest an agent waits for a batch to fill before it handles what it has (the latency it may add)."""

Handler = Callable[[Record], Awaitable[str]]
"""What an agent runs for each record (or item of a packed record) it takes; returns the outcome counted."""
Finish = Callable[[], Awaitable[None]]
"""What an agent runs once its batch's records are handled, before their writes are flushed."""
Begin = Callable[[], None]
"""What an agent runs before a batch: drops what an earlier batch kept and never finished (one cut
short by a rebalance or a stop must not write, later, into a partition that may be another's)."""

HELD_SECONDS = 10.0
"""How long a committed offset may stay below what a worker handled before `commit_handled` commits it."""


class DeadLetter(Exception):
    """Raised by a handler for a record it cannot use; the record goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Positions:
    """Makes sure no record of an input partition is skipped, whatever the consumer commits or fetches.

    Faust 0.15 can skip records: it commits offsets of records no agent processed when a rebalance
    interrupts fetching, and its fetch loop drops records after a seek while it still delivers a
    batch fetched before it (our 3-worker correlation test lost a few hundred raw records one way,
    and a few correlations the other, not every run). So every agent records, per input partition,
    the next offset it expects: in memory for every record, and in the `positions` table (recovered
    with the partition) at most once a second and whenever it reaches the end of what is in the
    partition. A record beyond the expected offset means records were skipped: the agent reads them
    itself, straight from the broker (`GapReader`), and handles them before that record. What is
    read twice is folded idempotently, and every stage is order-independent, so reading again is
    always safe; at most a second of records is read again after a rebalance.
    """

    table: TableT[bytes, bytes]
    expected: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (consumer generation, next offset expected)."""
    saved_at: dict[tuple[str, int], float] = field(default_factory=dict)

    def skipped_from(self, app: faust.App, message: Message) -> int | None:
        """The first offset skipped before this record, or None when nothing was skipped."""
        tp = (message.topic, message.partition)
        known = self.expected.get(tp)
        if known is None or known[0] != app.consumer_generation_id:
            # After a rebalance the partition may have been elsewhere: its owner saved its position.
            stored = self.table.get(f"{message.topic}:{message.partition}".encode())
            candidates = [int(stored)] if stored else []
            expected = max([*candidates, *([known[1]] if known else [])], default=None)
        else:
            expected = known[1]
        if expected is not None and message.offset > expected:
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
            self.table[f"{message.topic}:{message.partition}".encode()] = str(nxt).encode()
            self.saved_at[tp] = now

    async def rewind_assigned(self, consumer: Any) -> list[tuple[str, int]]:
        """Runs after every rebalance, once the consumer sought to the committed offsets: every
        assigned input partition whose committed offset is beyond the position its owners recorded
        is read again from that position, so that its records are handled even if no new record
        comes (should Faust drop what it fetches again, the first record it delivers shows the gap).
        Returns the partitions it rewound."""
        rewound: list[tuple[str, int]] = []
        for tp in sorted(consumer.assignment()):
            stored = self.table.get(f"{tp.topic}:{tp.partition}".encode())
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


@dataclass
class Changelog:
    """Table changelog records written while handling records, sent straight to the producer when a
    record is done (see `_send_changelog_straight` in stream/app.py).

    Faust queues every table write in a buffer of its own that one task drains a record at a time
    through its publishing path, and stops the streams whenever more than 100 wait (in our fold
    benchmark the worker sat idle about a third of the time before; busy 96% after, and 10-25%
    faster: bench/README.md). A key written several times before a flush (a series' index, a day's
    figures, within one batch) sends only its last value: the changelogs are compacted and
    recovery keeps the last value of each key anyway, and the earlier ones were never anywhere else
    but in this worker's store. Records go out in the order of their last writes, one flush at a
    time, so the changelog of every key keeps the order of its writes. When one is acknowledged,
    the store notes its offset as Faust's own callback does (recovery starts after it).
    """

    pending: dict[tuple[str, int, bytes], tuple[bytes | None, Any]] = field(default_factory=dict)
    """(topic, partition, key) -> (last value written, its store), in the order of the last writes."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    delivered: dict[tuple[int, faust.types.TP], tuple[Any, int]] = field(default_factory=dict)
    """(store id, changelog partition) -> (store, newest offset acknowledged) not yet noted in the store."""

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None, store: Any) -> None:
        where = (topic, partition, key)
        self.pending.pop(where, None)  # to the end: the order is that of the last writes
        self.pending[where] = (value, store)

    async def flush(self, app: faust.App) -> None:
        """Returns once every record written so far is in the producer's hands (whoever sends it), so
        that the commit that follows, which flushes the producer first, covers them."""
        async with self.lock:
            # Taken whole (popping a dict from its front makes each look-up scan what was popped).
            # What other agents write meanwhile is theirs to flush, after this one: the lock keeps the order.
            pending, self.pending = self.pending, {}
            producer = app.producer
            for (topic, partition, key), (value, store) in pending.items():
                delivery = await producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)
                cast(asyncio.Future[Any], delivery).add_done_callback(partial(self._delivered, store))

    def _delivered(self, store: Any, delivery: asyncio.Future[Any]) -> None:
        """What Faust does when a changelog record is acknowledged: the store notes its offset
        (recovery reads the changelog from there). Noted once per partition for all the
        acknowledgements of one turn of the event loop: each note is a RocksDB write, and a batch
        acknowledges hundreds of records at once (a note that comes late only makes a recovery
        read a few records again)."""
        if delivery.cancelled() or delivery.exception() is not None:
            log.error("a table changelog record was not delivered: %r",
                      None if delivery.cancelled() else delivery.exception())  # fmt: skip
            return
        sent = delivery.result()
        tp = faust.types.TP(sent.topic, sent.partition)
        if not self.delivered:
            asyncio.get_running_loop().call_soon(self._note_delivered)
        _, newest = self.delivered.get((id(store), tp), (store, -1))
        self.delivered[(id(store), tp)] = (store, max(newest, sent.offset))

    def _note_delivered(self) -> None:
        delivered, self.delivered = self.delivered, {}
        for (_, tp), (store, offset) in delivered.items():
            store.set_persisted_offset(tp, offset)


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
    gaps: GapReader = field(init=False)
    offsets: BrokerOffsets = field(init=False)
    outbox: Outbox = field(init=False)
    outbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _processed: dict[tuple[str, str], Any] = field(default_factory=dict)
    packed: frozenset[str] = field(init=False)
    """The internal topics, whose records are packed (see stream/packed.py)."""
    changelog: Changelog = field(default_factory=Changelog)
    completed: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (consumer generation, next offset) once every earlier record is handled
    and its table writes are in the producer's hands (see `commit_handled`)."""
    held: dict[Any, tuple[int, float]] = field(default_factory=dict)
    """tp -> (an offset up to which every record was done, since when Faust's commit has not got there)."""

    def __post_init__(self) -> None:
        self.positions = Positions(self.table("positions", "next offset expected by topic:partition"))
        self.gaps = GapReader(self.settings.kafka_bootstrap)
        self.offsets = BrokerOffsets(self.settings.kafka_bootstrap)
        self.outbox = Outbox(self.settings.partitions)
        self.packed = frozenset(self.names.internal)

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
        """Sends a record: to an internal topic through the outbox, which `handle_batch` empties when
        its batch is done; to any other topic at once."""
        data = value.encode() if isinstance(value, str) else value
        if topic in self.packed:
            self.outbox.add(topic, key, data)
            return
        await self._produce(topic, key.encode(), data)

    async def flush_outbox(self) -> None:
        """Returns once every item written so far is in the producer's hands, packed. One flush at a
        time (agents share the outbox): items of a topic and partition reach the producer in the
        order they were written, whichever agent's flush takes them."""
        async with self.outbox_lock:
            for topic, partition, key, value in self.outbox.take():
                await self._produce(topic, key, value, partition)

    async def _produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        # Straight to the producer: Faust's Topic.send wraps every record in futures and sensor calls
        # that cost half again as much CPU per record (bench/README.md). Delivery is the same: the
        # commit of input offsets flushes this producer first.
        delivery = await self.app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)
        cast(asyncio.Future[object], delivery).add_done_callback(partial(_delivered, topic))

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
    @contextmanager
    def acting_for(event: EventT[bytes]) -> Iterator[None]:
        """Within it, table reads and writes go to the partition of `event` (a batch's `finish`
        writing back what its records changed)."""
        token = _CURRENT_EVENT.set(weakref.ref(event))
        try:
            yield
        finally:
            _CURRENT_EVENT.reset(token)

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
        handler kept for the whole batch. Once it returns, every table write of the batch is in the
        producer's hands and `completed` covers each record handled, so that Faust's acks of the
        batch, and the commit after them, cover only what is done."""
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
        await self.flush_outbox()
        await self.changelog.flush(self.app)
        generation = self.app.consumer_generation_id
        for tp, nxt in done.items():
            self.completed[tp] = (generation, nxt)

    async def commit_handled(self, now: float | None = None) -> dict[Any, int]:
        """Runs every few seconds: where Faust's consumer has not committed an assigned partition up
        to the offset this worker had completed `HELD_SECONDS` ago (`completed`: every record before
        it handled, by it or by earlier owners as `Positions` knows, and their table writes in the
        producer's hands), commits the offset it has completed now itself. Returns what it committed.
        Faust commits every second, so a partition it keeps up with is never touched; one it moves
        a record at a time (the duplicate below) is.

        Faust commits a partition only past a run of offsets it saw acked or noted as a gap, and in
        the trust suite's broker restart a partition's commit stayed behind for good, every record
        handled, in at least four ways: offsets never acked just past the committed one; a gap that
        Faust merges only into a non-empty list of acks; an offset twice in that list (every commit
        then moves by one record); and one not understood, with neither of those. So the commit
        follows what was handled, not Faust's bookkeeping: the producer is flushed first, as Faust
        does, so every record written on the way is in Kafka before the offset moves; and Faust's
        acks and gaps below the new offset are dropped, since they can no longer move it."""
        if getattr(self.app, "rebalancing", False):
            return {}  # the assignment is about to change: the next generation's first records tell
        consumer: Any = self.app.consumer  # Faust's private commit bookkeeping is used below
        committed_of = consumer._committed_offset  # noqa: SLF001  # Faust's view of the group's commits
        assigned = consumer.assignment()
        now = time.monotonic() if now is None else now
        due: dict[Any, int] = {}
        for (topic, partition), (_, nxt) in list(self.completed.items()):
            tp = faust.types.TP(topic, partition)
            committed = committed_of.get(tp)
            if tp not in assigned or (committed is not None and committed >= nxt):
                self.held.pop(tp, None)
            elif (mark := self.held.get(tp)) is None or (committed is not None and committed >= mark[0]):
                self.held[tp] = (nxt, now)  # Faust got past the last mark: watch whether it gets past this one
            elif now - mark[1] >= HELD_SECONDS:
                due[tp] = nxt
        if not due:
            return {}
        # One commit at a time, as Faust's own `commit` does: its bookkeeping is updated after each.
        while consumer._commit_fut is not None:  # noqa: SLF001
            await consumer.maybe_wait_for_commit_to_finish()
            await asyncio.sleep(0)  # a cancelled commit is waited for without blocking: let it clear up
        mine = consumer._commit_fut = asyncio.get_running_loop().create_future()  # noqa: SLF001
        try:
            due = {tp: nxt for tp, nxt in due.items() if (committed_of.get(tp) or -1) < nxt}
            if not due:
                return {}
            before = {tp: committed_of.get(tp) for tp in due}
            await self.app.producer.flush()
            if not await consumer._commit(due):  # noqa: SLF001  # the group's commit, without Faust's ack list
                return {}
            committed_of.update(due)
            self.app.tables.on_commit(due)
        finally:
            if consumer._commit_fut is mine:  # noqa: SLF001
                consumer._commit_fut = None  # noqa: SLF001
            if not mine.done():
                mine.set_result(None)  # wakes Faust's commits that waited for this one
        for tp, nxt in due.items():
            done_to, since = self.held.pop(tp)
            log.warning("%s[%d]: committed offset %s still below %d, where every record was done %.0f s ago: "
                        "committed %d", tp.topic, tp.partition, before[tp], done_to, now - since, nxt)  # fmt: skip
            _forget_acks_below(consumer, tp, nxt)
        return due

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
            outcome = "deadlettered"
        except Exception as error:  # noqa: BLE001  # an agent must survive any record; the record is kept
            log.exception("unexpected error on %s[%d]@%d", message.topic, message.partition, message.offset)
            await self.dead_letter(message, "error", f"{type(error).__name__}: {error}")
            outcome = "error"
        self._count(message.topic, outcome)

    def _count(self, topic: str, outcome: str) -> None:
        counter = self._processed.get((topic, outcome))
        if counter is None:  # `labels` looks the child up under a lock: once per topic and outcome
            counter = self._processed[(topic, outcome)] = self.metrics.processed.labels(topic, outcome)
        counter.inc()

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


def _delivered(topic: str, delivery: asyncio.Future[object]) -> None:
    """Runs when the broker answered a send: a record it refused after every retry is logged loudly."""
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("a record for %s was not delivered: %r", topic, delivery.exception())


def _forget_acks_below(consumer: Any, tp: Any, offset: int) -> None:
    """Drops Faust's acks and gaps of a partition below an offset now committed."""
    acked = consumer._acked.get(tp)  # noqa: SLF001
    if acked:
        below = [seen for seen in acked if seen < offset]
        acked[:] = [seen for seen in acked if seen >= offset]
        consumer._acked_index[tp].difference_update(below)  # noqa: SLF001
    gaps = consumer._gap.get(tp)  # noqa: SLF001
    if gaps:
        gaps.chop(0, offset)


def _highwater(app: faust.App, message: Message) -> int:
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
