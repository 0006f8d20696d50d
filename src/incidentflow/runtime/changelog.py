"""Table changelog records sent straight to the producer when a batch is done."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import faust

from incidentflow.runtime.batches import Handover, Item

log = logging.getLogger("incidentflow.worker")


@dataclass
class Changelog:
    """Table changelog records written while handling records, sent straight to the producer when a
    record is done (see `_send_changelog_straight` in runtime/install.py).

    Faust queues every table write in a buffer of its own that one task drains a record at a time
    through its publishing path, and stops the streams whenever more than 100 wait. A key written several times before a flush (a series' index, a day's
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

    async def flush(self, app: faust.App, handover: Handover) -> None:
        """Puts every record written so far into `handover` (which gives them to the producer in
        order), so that the commit that follows, which flushes the producer and with it the
        hand-over first, covers them."""
        async with self.lock:
            # Taken whole (popping a dict from its front makes each look-up scan what was popped).
            # What other agents write meanwhile is theirs to flush, after this one: the lock keeps the order.
            if not self.pending:
                return
            pending, self.pending = self.pending, {}
            groups: dict[tuple[str, int], tuple[Any, list[Item]]] = {}
            for (topic, partition, key), (value, store) in pending.items():
                groups.setdefault((topic, partition), (store, []))[1].append((key, value, None))
            # one table (one store) per changelog topic
            await handover.put(aiokafka_producer(app), [(topic, partition, items, partial(self._delivered, store))
                                                        for (topic, partition), (store, items) in groups.items()])  # fmt: skip

    def _delivered(self, store: Any, delivery: asyncio.Future[Any], count: int = 1) -> None:
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
        self.delivered[(id(store), tp)] = (store, max(newest, sent.offset + count - 1))

    def _note_delivered(self) -> None:
        delivered, self.delivered = self.delivered, {}
        for (_, tp), (store, offset) in delivered.items():
            store.set_persisted_offset(tp, offset)


def aiokafka_producer(app: faust.App) -> Any:
    """The aiokafka producer under Faust's (started with the app): batches go to it straight."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: SLF001  # Faust's aiokafka driver
