"""The group membership while partitions are assigned (runtime/membership.py): heartbeats go on
through a long assignment callback, and a membership lost there stops the worker before it writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.transport.drivers.aiokafka import ConsumerRebalanceListener

from incidentflow.runtime import install
from incidentflow.runtime.membership import Membership


@dataclass
class Coordinator:
    """aiokafka's group coordinator as the keepalive sees it: answers `answers` in turn, then NoError."""

    generation: int = 7
    _heartbeat_interval_ms: int = 10
    answers: list[str] = field(default_factory=list)
    beats: int = 0

    async def _do_heartbeat(self) -> bool:
        self.beats += 1
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "unknown member":  # aiokafka resets the generation, and rejoins later
            self.generation = -1
            return False
        return answer in ("ok", "rebalancing")  # a rebalance in progress: the member is still known


async def callback(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "assigned"


def test_heartbeats_go_on_while_a_long_assignment_callback_runs_and_stop_with_it() -> None:
    membership, coordinator = Membership(on_lost=lambda g: None), Coordinator(answers=["ok", "rebalancing"])

    async def run() -> tuple[str, int]:
        result = await membership.while_assigning(coordinator, callback(0.2))
        beats = coordinator.beats
        await asyncio.sleep(0.1)
        return result, beats

    result, beats = asyncio.run(run())
    assert result == "assigned"
    assert 10 <= beats <= 21  # every 10 ms for 200 ms (a slow machine sleeps longer)
    assert coordinator.beats == beats  # none once the callback returned: aiokafka's own routine takes over
    assert membership.lost == set()


def test_a_membership_lost_during_the_callback_stops_the_worker_before_it_writes_that_generation() -> None:
    stopped: list[int] = []
    membership, coordinator = Membership(on_lost=stopped.append), Coordinator(answers=["ok", "unknown member"])
    assert asyncio.run(membership.while_assigning(coordinator, callback(0.1))) == "assigned"
    assert coordinator.beats == 2  # no heartbeat once the group said it no longer knows the worker
    assert membership.lost == {7}
    membership.check(8)  # another generation (the rejoin): writes go on
    assert stopped == []
    membership.check(7)
    assert stopped == [7]


def test_a_callback_that_fails_ends_the_heartbeats_and_raises() -> None:
    membership, coordinator = Membership(on_lost=lambda g: None), Coordinator()

    async def failing() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("recovery failed")

    async def run() -> int:
        try:
            await membership.while_assigning(coordinator, failing())
        except RuntimeError:
            beats = coordinator.beats
            await asyncio.sleep(0.05)
            return coordinator.beats - beats
        raise AssertionError("the callback's error was swallowed")

    assert asyncio.run(run()) == 0


def test_the_worker_heartbeats_through_fausts_assignment_callback() -> None:
    install.install(64)
    patched = ConsumerRebalanceListener.on_partitions_assigned
    assert getattr(patched, "_incidentflow_guard", False)
    install.install(64)  # twice changes nothing
    assert ConsumerRebalanceListener.on_partitions_assigned is patched

    coordinator = Coordinator()
    seen: list[object] = []

    class Consumer:
        _coordinator = coordinator

    class Thread:
        app = type("App", (), {"consumer_generation_id": 0})()

        def _ensure_consumer(self) -> Consumer:
            return Consumer()

        async def on_partitions_assigned(self, assigned: object, generation: int) -> None:
            seen.append((assigned, generation))
            await asyncio.sleep(0.1)

    listener = ConsumerRebalanceListener(Thread())  # type: ignore[arg-type]
    asyncio.run(listener.on_partitions_assigned(set()))
    assert seen == [(set(), 7)]
    assert coordinator.beats >= 5
