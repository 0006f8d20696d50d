"""A stage takes turns with the rest of the worker: a long batch lets the event loop run meanwhile."""

from __future__ import annotations

import asyncio
import time

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import WorkerMetrics
from incidentflow.runtime import harness
from incidentflow.runtime.harness import Runtime
from incidentflow.runtime.packed import Record
from incidentflow.topics import Topics
from tests.unit.runtime.test_packed import Event, Producer, message
from tests.unit.runtime.test_positions import App


def test_a_batch_that_takes_longer_than_a_turn_lets_the_loop_run_other_tasks_meanwhile() -> None:
    settings = Settings()
    names = Topics.of(settings)
    app = App(producer=Producer())  # type: ignore[arg-type]
    worker = Runtime(settings=settings, integrations=Integrations(by_name={}), app=app,  # type: ignore[arg-type]
                     names=names, metrics=WorkerMetrics())  # fmt: skip
    seen: list[str] = []
    ticks: list[int] = []

    async def handler(record: Record) -> str:
        time.sleep(harness.TURN_SECONDS / 4)  # work that never waits
        seen.append(record.name)
        return "applied"

    async def ticker() -> None:
        while True:
            ticks.append(len(seen))  # how many records the batch had handled when the loop ran this
            await asyncio.sleep(0)

    async def run() -> None:
        other = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        events = [Event(message(names.alerts, 0, offset, b"k", b"{}")) for offset in range(16)]
        await worker.handle_batch(events, handler)  # type: ignore[arg-type]
        other.cancel()

    asyncio.run(run())
    assert len(seen) == 16
    during = sorted({n for n in ticks if 0 < n < 16})
    assert len(during) >= 2  # the loop ran other tasks at least twice while the batch was handled
    assert all(b - a >= 3 for a, b in zip(during, during[1:], strict=False))  # but only once a turn was up
