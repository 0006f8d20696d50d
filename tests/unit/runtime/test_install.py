"""What `runtime.install` changes for the whole worker process."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from incidentflow.runtime.install import GC_THRESHOLDS, install


def test_the_worker_collects_cycles_less_often_than_python_by_default() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        install(256)
        assert gc.get_threshold() == GC_THRESHOLDS
        install(256)  # installing twice changes nothing
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_the_producers_flush_waits_for_the_runtimes_handover() -> None:
    from types import SimpleNamespace

    from faust.transport.drivers.aiokafka import Producer as FaustProducer

    from incidentflow.runtime.batches import Handover

    install(256)

    async def run() -> None:
        handover, flushed = Handover(), []
        requests = asyncio.Semaphore(0)

        class Aiokafka:
            def create_batch(self) -> Any:
                return SimpleNamespace(append=lambda **_: object())

            async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
                await requests.acquire()  # the partition's earlier batch is still waiting for its request
                delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                delivery.set_result(None)
                return delivery

        async def buffer_flush() -> None:
            flushed.append("faust's buffer")

        app = SimpleNamespace(incidentflow_runtime=SimpleNamespace(handover=handover), rebalancing=False)
        faust_producer = SimpleNamespace(
            app=app, buffer=SimpleNamespace(flush=buffer_flush), _producer=None, _transaction_producers={},
        )  # fmt: skip

        def put(value: bytes) -> Any:
            return handover.put(Aiokafka(), [("t", 0, [(b"k", value, None)], lambda *_: None)])

        await put(b"handled")
        await asyncio.sleep(0)  # taken by the hand-over, waiting for its request
        commit = asyncio.ensure_future(FaustProducer.flush(faust_producer))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert not commit.done() and not flushed  # a commit waits: the record is not in the producer's hands
        await put(b"handled while the commit waits")
        requests.release()  # the first record is in the producer's hands, the second not
        await asyncio.wait_for(commit, 1)
        assert flushed == ["faust's buffer"] and handover.held == 1  # the commit did not wait for the second

        app.rebalancing = True
        rebalance = asyncio.ensure_future(FaustProducer.flush(faust_producer))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert not rebalance.done()  # a rebalance's flush waits until the hand-over is empty
        requests.release()
        await asyncio.wait_for(rebalance, 1)
        assert flushed == ["faust's buffer"] * 2 and handover.held == 0

    asyncio.run(run())


def test_the_consumer_delivers_a_record_at_once_and_one_that_must_wait_as_faust_does() -> None:
    import warnings

    from faust.transport.consumer import Consumer as FaustConsumer

    install(256)

    class Consumer:
        """What `wait_first` uses of Faust's consumer (a mode Service)."""

        def __init__(self) -> None:
            self._stopped, self._crashed = asyncio.Event(), asyncio.Event()
            self.loop = asyncio.get_running_loop()

    async def run() -> None:
        consumer, suspended = Consumer(), asyncio.Event()
        delivered: list[str] = []

        async def deliver(name: str, room: asyncio.Event | None = None) -> str:
            if room is not None:
                await room.wait()  # the stream's buffer is full
            delivered.append(name)
            return name

        wait_first = FaustConsumer.wait_first
        tasks = len(asyncio.all_tasks())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a coroutine never awaited (the suspension's wait) would warn
            results = await wait_first(consumer, deliver("a"), suspended.wait())  # type: ignore[arg-type]
        assert results.done and results.results == ["a"] and not results.stopped
        assert len(asyncio.all_tasks()) == tasks  # no task made for it

        room = asyncio.Event()
        waiting = asyncio.ensure_future(wait_first(consumer, deliver("b", room), suspended.wait()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert not waiting.done()
        room.set()  # the buffer drains: the delivery goes on from where it waited
        assert (await asyncio.wait_for(waiting, 1)).results == ["b"]

        full = asyncio.Event()
        waiting = asyncio.ensure_future(wait_first(consumer, deliver("c", full), suspended.wait()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        suspended.set()  # a rebalance suspends the flow: the waiting delivery is given up, as in Faust
        await asyncio.wait_for(waiting, 1)
        assert delivered == ["a", "b"]

    asyncio.run(run())


def test_the_consumer_waits_for_the_producer_buffer_only_when_faust_would() -> None:
    from types import SimpleNamespace

    from faust.transport.producer import ProducerBuffer

    install(256)
    original = ProducerBuffer.wait_until_ebb.__wrapped__  # type: ignore[attr-defined]
    assert original is not ProducerBuffer.wait_until_ebb

    def buffer(queued: int, threaded: bool, flushed: list[int | None]) -> Any:
        """A buffer with `queued` records waiting, as Faust's producer holds it (threaded or not)."""
        pending: asyncio.Queue[object] = asyncio.Queue()
        for n in range(queued):
            pending.put_nowait(n)

        async def flush_atmost(limit: int | None) -> int:
            flushed.append(limit)
            return 0

        found = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(producer_threaded=threaded)),
                                pending=pending, queue=pending if threaded else None, max_messages=100,
                                flush_atmost=flush_atmost)  # fmt: skip
        found.size = ProducerBuffer.size.fget(found)  # type: ignore[attr-defined]  # Faust's own count
        return found

    async def run() -> None:
        for queued, threaded in ((0, False), (100, False), (101, False), (250, False), (0, True), (101, True)):
            ours: list[int | None] = []
            faust_s: list[int | None] = []
            await ProducerBuffer.wait_until_ebb(buffer(queued, threaded, ours))
            await original(buffer(queued, threaded, faust_s))
            assert ours == faust_s == ([100] if queued > 100 else []), (queued, threaded)

    asyncio.run(run())
