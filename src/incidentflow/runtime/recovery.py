"""Bulk restore: a table partition's changelog read straight into its RocksDB store before Faust's recovery.

Faust restores a table by passing every changelog record through its consumer, conductor and
stream machinery, a few thousand records a second: a worker that lost its disk took minutes per
million incidents. Once Faust has worked out, at the start of a recovery, where each active
changelog partition must be read from (the offset its store noted last, or the start of the log)
and where it ends, `BulkLoad` reads those ranges itself with a consumer outside the group, writes
them to the stores in write batches, notes each partition's offset in its store as Faust does, and
tells Faust's recovery where it got to: Faust reads only what is left, usually nothing.

A load stops at its deadline (Faust's recovery gives each of its steps a time limit, and a step
that overruns it stops the recovery), leaving the rest to Faust's own path: the result is the
same, only slower. A store that is not RocksDB (`memory://`) is left to Faust.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, TableT

log = logging.getLogger("incidentflow.worker")

FETCH_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
MAX_RECORDS = 50_000


@dataclass(frozen=True)
class Loaded:
    """What one bulk load did: records written, and the partitions it read to their end."""

    records: int
    complete: frozenset[TP]
    seconds: float


@dataclass
class BulkLoad:
    """Restores the changelog partitions of RocksDB-backed tables straight into their stores."""

    bootstrap: str
    tables: Mapping[str, TableT[bytes, bytes]]
    """The worker's tables by name."""
    consumer: Callable[[], Any] | None = None
    """Makes the consumer that reads the changelogs (by default one of the broker's, outside the group)."""

    def _store_of(self, changelog: str) -> Any | None:
        """The RocksDB store of the table whose changelog topic this is (None: not one to load)."""
        for table in self.tables.values():
            if table.changelog_topic.get_topic_name() == changelog:
                store = table.data
                return store if hasattr(store, "_db_for_partition") and getattr(store, "use_rocksdict", False) else None
        return None

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES,
                                max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
                                client_id="incidentflow-bulk-restore")  # fmt: skip

    async def run(self, tps: Iterable[TP], offsets: MutableMapping[TP, int], highwaters: Mapping[TP, int],
                  deadline_seconds: float) -> Loaded:  # fmt: skip
        """Loads each partition from after `offsets[tp]` (Faust's: the last offset already in the store,
        -1 for none) through `highwaters[tp]` (the last offset in the log), moving `offsets` along
        as it goes; returns within `deadline_seconds`."""
        started = time.monotonic()
        ranges: dict[TP, tuple[int, int, Any]] = {}
        for tp in tps:
            store = self._store_of(tp.topic)
            start, end = offsets.get(tp, -1) + 1, highwaters.get(tp, -1) + 1
            if store is not None and end > start:
                ranges[tp] = (start, end, store)
        if not ranges:
            return Loaded(0, frozenset(), 0.0)
        consumer = self.consumer() if self.consumer is not None else self._consumer()
        records, complete = 0, set()
        await consumer.start()
        try:
            partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in ranges}
            consumer.assign(list(partitions))
            for kafka_tp, tp in partitions.items():
                consumer.seek(kafka_tp, ranges[tp][0])
            pending = dict(partitions)
            while pending and time.monotonic() - started < deadline_seconds:
                fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=MAX_RECORDS)
                for kafka_tp, batch in fetched.items():
                    tp = partitions[kafka_tp]
                    _, end, store = ranges[tp]
                    last = _write(store, tp.partition, (r for r in batch if r.offset < end))
                    if last is not None:
                        records += last[1]
                        store.set_persisted_offset(tp, last[0])
                        offsets[tp] = last[0]
                for kafka_tp in list(pending):
                    tp = partitions[kafka_tp]
                    if await consumer.position(kafka_tp) >= ranges[tp][1]:
                        offsets[tp] = ranges[tp][1] - 1
                        ranges[tp][2].set_persisted_offset(tp, offsets[tp])
                        complete.add(tp)
                        del pending[kafka_tp]
        finally:
            await consumer.stop()
        loaded = Loaded(records, frozenset(complete), time.monotonic() - started)
        log.info("restored %d changelog records into %d of %d partitions in %.1f s (the rest, if any, "
                 "left to Faust's recovery)", records, len(complete), len(ranges), loaded.seconds)  # fmt: skip
        return loaded


def _write(store: Any, partition: int, records: Iterable[Any]) -> tuple[int, int] | None:
    """Writes the records to the partition's database in one batch; (last offset, records) or None."""
    batch = rocksdict.WriteBatch(raw_mode=True)
    last, count = None, 0
    for record in records:
        if record.value is None:
            batch.delete(record.key)
        else:
            batch.put(record.key, record.value)
        last, count = record.offset, count + 1
    if last is None:
        return None
    store._db_for_partition(partition).write(batch)  # noqa: SLF001  # the database Faust's own restore writes to
    return last, count
