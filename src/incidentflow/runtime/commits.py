"""Commits: an input partition's committed offset follows what was handled, not Faust's ack bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

log = logging.getLogger("incidentflow.worker")

HELD_SECONDS = 10.0
"""How long a committed offset may stay below what a worker handled before `commit_handled` commits it."""


@dataclass
class Commits:
    """What the worker has completed per input partition, and the commits it makes where Faust's lag."""

    completed: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (consumer generation, next offset) once every earlier record is handled
    and what its handling wrote is in the hand-over to the producer (see `commit_handled`)."""
    held: dict[Any, tuple[int, float]] = field(default_factory=dict)
    """tp -> (an offset up to which every record was done, since when Faust's commit has not got there)."""

    async def commit_handled(self, app: faust.App, now: float | None = None) -> dict[Any, int]:
        """Runs every few seconds: where Faust's consumer has not committed an assigned partition up
        to the offset this worker had completed `HELD_SECONDS` ago (`completed`: every record before
        it handled, by it or by earlier owners as `Positions` knows, and what their handling wrote in
        the hand-over to the producer), commits the offset it has completed now itself. Returns what it committed.
        Faust commits every second, so a partition it keeps up with is never touched; one it moves
        a record at a time (the duplicate below) is.

        Faust commits a partition only past a run of offsets it saw acked or noted as a gap, and after
        a broker restart a partition's commit can stay behind for good, every record handled, in
        at least four ways: offsets never acked just past the committed one; a gap that
        Faust merges only into a non-empty list of acks; an offset twice in that list (every commit
        then moves by one record); and one not understood, with neither of those. So the commit
        follows what was handled, not Faust's bookkeeping: the producer is flushed first, as Faust
        does, so every record written on the way is in Kafka before the offset moves; and Faust's
        acks and gaps below the new offset are dropped, since they can no longer move it."""
        if getattr(app, "rebalancing", False):
            return {}  # the assignment is about to change: the next generation's first records tell
        consumer: Any = app.consumer  # Faust's private commit bookkeeping is used below
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
            await app.producer.flush()
            if not await consumer._commit(due):  # noqa: SLF001  # the group's commit, without Faust's ack list
                return {}
            committed_of.update(due)
            app.tables.on_commit(due)
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
