"""What the worker counts of each record, and what it leaves to its own metrics rather than Faust's monitor."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust.types import TP

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.runtime.harness import DeadLetter, Runtime
from incidentflow.runtime.packed import Record
from incidentflow.topics import Topics
from tests.unit.runtime.test_packed import Event, Producer, message
from tests.unit.runtime.test_positions import App


def test_every_record_of_a_batch_is_counted_by_topic_and_outcome_once_the_batch_is_done() -> None:
    settings = Settings()
    names = Topics.of(settings)
    metrics = WorkerMetrics()
    worker = Runtime(settings=settings, integrations=Integrations(by_name={}), app=App(producer=Producer()),  # type: ignore[arg-type]
                     names=names, metrics=metrics)  # fmt: skip

    async def handler(record: Record) -> str:
        if record.value == b"bad":
            raise DeadLetter("bad")
        return "duplicate" if record.offset % 3 == 0 else "applied"

    def counted(outcome: str) -> float:
        return metrics.processed.labels(names.alerts, outcome)._value.get()  # noqa: SLF001

    async def run() -> None:
        for first in (0, 10):
            events = [Event(message(names.alerts, 0, offset, b"k", b"{}")) for offset in range(first, first + 9)]
            events.append(Event(message(names.alerts, 0, first + 9, b"k", b"bad")))
            await worker.handle_batch(events, handler)  # type: ignore[arg-type]

    asyncio.run(run())
    assert (counted("applied"), counted("duplicate"), counted("deadlettered")) == (12, 6, 2)


def test_faust_keeps_no_statistics_of_each_record(tmp_path: Path) -> None:
    from incidentflow.runtime.app import RecordStatsOff, create

    runtime = create(Settings(_env_file=None, data_dir=tmp_path), Integrations(by_name={}))  # type: ignore[call-arg]
    monitor = runtime.app.monitor
    assert isinstance(monitor, RecordStatsOff)
    tp = TP("t", 0)
    record = message("t", 0, 5, b"k", b"v")
    runtime.app.sensors.on_message_in(tp, 5, record)
    assert monitor.messages_received_total == 0 and not monitor.tp_read_offsets
    runtime.app.sensors.on_message_out(tp, 5, record)
    assert monitor.messages_active == 0
    monitor.on_tp_commit({tp: 6})  # what the runtime does not leave out: commits, as Faust counts them
    assert monitor.tp_committed_offsets == {tp: 6}
