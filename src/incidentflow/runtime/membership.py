"""Group membership while partitions are being assigned: heartbeats go on, and a membership lost
there stops the worker before it writes.

aiokafka stops its heartbeats when the worker rejoins its group and starts them again only once
the assignment callback has returned; Faust opens its stores and sets up their recovery in that
callback, which takes seconds on a busy machine. A callback longer than the session timeout
cost the worker its membership: the group gave its partitions to the others, while the worker,
not knowing it until its next heartbeat, recovered them too and handled records of partitions
that another worker was handling at the same time. Its changelog records then landed after the
new owner's, and a later recovery read its older values as the last ones.

So a task heartbeats for the worker while the callback runs, every heartbeat interval, as the Java
client's heartbeat thread does (`install._heartbeat_while_assigning`). Should the group still answer
that it no longer knows the worker (the callback outlasted a session in which no heartbeat got
through), the worker notes the generation as lost and stops before it writes anything of that
generation (`check`, before every flush), as after a pause (runtime/pauses.py): started again, it
recovers its tables from their changelogs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from incidentflow.runtime.pauses import stop_unwritten

log = logging.getLogger("incidentflow.worker")


class Coordinator(Protocol):
    """What the keepalive uses of aiokafka's group coordinator."""

    generation: int
    _heartbeat_interval_ms: int

    async def _do_heartbeat(self) -> bool: ...


def _exit_lost(generation: int) -> NoReturn:
    stop_unwritten(f"the group stopped knowing this worker while its partitions of generation {generation} were "
                   "being assigned")  # fmt: skip


@dataclass
class Membership:
    """The generations whose membership the worker lost while being assigned their partitions."""

    lost: set[int] = field(default_factory=set)
    on_lost: Callable[[int], None] = _exit_lost

    def check(self, generation: int) -> None:
        """Before a batch's writes: stops the worker if it lost the membership of this generation."""
        if generation in self.lost:
            self.on_lost(generation)

    async def keep_alive(self, coordinator: Coordinator) -> None:
        """Heartbeats every interval until cancelled; notes the generation lost if the group no longer knows it."""
        generation = coordinator.generation
        interval = coordinator._heartbeat_interval_ms / 1000  # noqa: SLF001
        while True:
            await asyncio.sleep(interval)
            # aiokafka's own heartbeat: on an unknown member or a stale generation it resets the
            # generation (and rejoins once the callback has returned); a rebalance in progress answers
            # True, and the heartbeats go on, as its own routine does.
            if not await coordinator._do_heartbeat() and coordinator.generation != generation:  # noqa: SLF001
                log.error("the group no longer knows this worker (generation %d): its partitions may be handled "
                          "by another worker", generation)  # fmt: skip
                self.lost.add(generation)
                return

    async def while_assigning(self, coordinator: Coordinator, callback: Awaitable[Any]) -> Any:
        """Runs the assignment callback while heartbeating for it."""
        beating = asyncio.ensure_future(self.keep_alive(coordinator))
        try:
            return await callback
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


MEMBERSHIP = Membership()
"""The worker's: `install._heartbeat_while_assigning` heartbeats through it and notes lost generations
in it, `Runtime` checks it."""
