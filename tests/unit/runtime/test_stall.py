"""A partition with records waiting and none handled for half a minute is named, with where to read it again from."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from incidentflow.runtime.stall import BrokerOffsets, StallWatch

RAW = TP("t.raw", 0)
CHANGELOG = TP("app-positions-changelog", 0)


@dataclass
class Consumer:
    ends: dict[TP, int]
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)
    flow_active: bool = True

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)


@dataclass
class Assignor:
    tps: set[TP]

    def assigned_actives(self) -> set[TP]:
        return self.tps


@dataclass
class FlowControl:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class App:
    consumer: Consumer
    assignor: Assignor
    consumer_generation_id: int = 3
    rebalancing: bool = False
    flow_control: FlowControl = field(default_factory=FlowControl)


def app(end: int, committed: int | None = 0) -> Any:
    return App(Consumer({RAW: end, CHANGELOG: 99}, {RAW: committed, CHANGELOG: 0}), Assignor({RAW, CHANGELOG}))


def test_a_partition_that_does_not_move_while_records_wait_is_named_after_half_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch, worker = StallWatch(), app(end=500)
    completed = {("t.raw", 0): (3, 120)}
    assert watch.check(worker, completed, now=0.0) == []
    assert watch.check(worker, completed, now=29.0) == []
    with caplog.at_level(logging.WARNING, "incidentflow.worker"):
        [(tp, nxt, warning)] = watch.check(worker, completed, now=31.0)
    assert (tp, nxt) == (RAW, 120)
    assert warning.startswith("t.raw[0]: 380 records waiting and none handled for 31 s (next offset 120, end 500;")
    assert warning.endswith("): reading again from 120")
    assert "consumer flow active: True" in warning and "aiokafka position: ?" in warning  # unknown parts say so
    assert caplog.messages == [warning]
    assert watch.check(worker, completed, now=45.0) == []  # at most once per 30 s
    assert len(watch.check(worker, completed, now=62.0)) == 1


def test_progress_or_an_empty_partition_is_not_a_stall() -> None:
    watch, worker = StallWatch(), app(end=500)
    for second in range(0, 300, 5):
        assert watch.check(worker, {("t.raw", 0): (3, 100 + second)}, now=float(second)) == []
    caught_up = {("t.raw", 0): (3, 500)}
    assert watch.check(worker, caught_up, now=400.0) == []
    assert watch.check(worker, caught_up, now=500.0) == []


def test_before_a_first_record_of_this_generation_the_committed_offset_is_the_progress() -> None:
    watch, worker = StallWatch(), app(end=500, committed=40)
    handled_in_an_earlier_generation = {("t.raw", 0): (2, 480)}
    assert watch.check(worker, handled_in_an_earlier_generation, now=0.0) == []
    [(_, nxt, warning)] = watch.check(worker, handled_in_an_earlier_generation, now=60.0)
    assert nxt == 40 and "460 records waiting" in warning


def test_a_rebalance_or_a_recovery_is_not_a_stall() -> None:
    watch, worker = StallWatch(), app(end=500)
    completed = {("t.raw", 0): (3, 120)}
    assert watch.check(worker, completed, now=0.0) == []
    worker.rebalancing = True
    assert watch.check(worker, completed, now=40.0) == []
    worker.rebalancing, worker.flow_control.active = False, False  # recovering: streams stopped
    assert watch.check(worker, completed, now=80.0) == []
    worker.flow_control.active = True
    assert watch.check(worker, completed, now=100.0) == []  # counted from the end of the recovery
    assert len(watch.check(worker, completed, now=131.0)) == 1


def test_a_partition_the_consumer_never_fetched_nor_the_group_committed_is_judged_by_the_broker() -> None:
    """Its end offset and committed offset unknown to the consumer, such a partition was invisible."""
    watch, worker = StallWatch(), App(Consumer({}, {}), Assignor({RAW}))
    assert watch.check(worker, {}, now=0.0) == []
    assert watch.check(worker, {}, now=60.0) == []  # nothing known: nothing judged
    bounds = {RAW: (7, 500)}
    assert watch.check(worker, {}, bounds, now=100.0) == []
    [(tp, nxt, warning)] = watch.check(worker, {}, bounds, now=131.0)
    assert (tp, nxt) == (RAW, 7)  # from the first offset still in the log, as the consumer would start
    assert "493 records waiting" in warning and "consumer's end offset: None" in warning


def test_the_broker_end_offset_wins_over_the_consumer_one() -> None:
    watch, worker = StallWatch(), app(end=120)  # the consumer's figure from its last fetch
    completed = {("t.raw", 0): (3, 120)}
    assert watch.check(worker, completed, {RAW: (0, 120)}, now=0.0) == []
    assert watch.check(worker, completed, {RAW: (0, 130)}, now=10.0) == []
    [(_, nxt, warning)] = watch.check(worker, completed, {RAW: (0, 130)}, now=41.0)
    assert nxt == 120 and "10 records waiting" in warning


def test_broker_offsets_without_a_broker_give_nothing_and_keep_no_consumer(caplog: pytest.LogCaptureFixture) -> None:
    offsets = BrokerOffsets("127.0.0.1:1", timeout_seconds=2.0)  # nothing listens on port 1

    async def twice() -> list[object]:
        return [await offsets.read([RAW]), await offsets.read([RAW]), await offsets.read([])]

    with caplog.at_level(logging.INFO, "incidentflow.worker"):
        assert asyncio.run(twice()) == [{}, {}, {}]
    assert offsets._consumer is None and offsets.last == {}  # noqa: SLF001  # the failed start was stopped
    assert sum("end offsets not known this round" in m for m in caplog.messages) == 2
