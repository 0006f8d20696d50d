"""Every change the runtime makes to Faust's and RocksDB's own behaviour, installed by one `install()`.

Each is guarded, so installing twice changes nothing. Stages never see any of them.
"""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import ConsumerRebalanceListener
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message
from mode.services import WaitResults

from incidentflow.runtime import heap, wire
from incidentflow.runtime.membership import MEMBERSHIP
from incidentflow.runtime.store import share_one_memory_budget

log = logging.getLogger("incidentflow.worker")


def install(store_memory_mib: int) -> None:
    """Runs once before the Faust app is built (and before RocksDB's and Faust's threads start)."""
    _never_commit_skipped_messages()
    _rewind_after_rebalance()
    _restore_in_bulk()
    _flush_waits_for_the_handover()
    _deliver_records_without_tasks()
    _look_at_the_producer_buffer_cheaply()
    _heartbeat_while_assigning()
    wire.install()
    heap.tune()
    _collect_cycles_less_often()
    share_one_memory_budget(store_memory_mib)


GC_THRESHOLDS = (50_000, 20, 20)
"""Allocations (net) between collections of the youngest generation, and collections of each
generation between collections of the next (Python's defaults: 700, 10, 10)."""


def _collect_cycles_less_often() -> None:
    """Runs Python's cycle collector less often. A worker allocates a few hundred objects per
    record (models, dicts, futures) that reference counting frees; with the default thresholds
    the collector runs every 700 allocations and walks the young objects each time, and walks
    every live object (the parsed states a fold keeps, Faust's and aiokafka's own) once in a
    hundred runs: 8% of the worker's CPU per record in `bench/fold_throughput.py`. The garbage
    that only the collector frees (cycles of futures and tracebacks) waits longer, bounded by the
    thresholds."""
    gc.set_threshold(*GC_THRESHOLDS)


def _never_commit_skipped_messages() -> None:
    """Keeps Faust from committing the offsets of records it skipped during a rebalance.

    When a rebalance starts, Faust (0.15) clears its queues and skips the records its streams still
    take from before the new generation, but it *acks* them on the way out ("ack the filtered
    message, otherwise the lag would increase"). Their offsets are then committed as processed, and
    the partition's next owner starts after records nobody processed. Refusing those acks leaves
    the committed offset before them, so the next owner processes them (the folds are idempotent).
    """
    if getattr(FaustConsumer.ack, "_incidentflow_guard", False):
        return
    original = FaustConsumer.ack

    def ack(self: FaustConsumer, message: Message) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            message.acked = True  # nobody waits for it: it was not processed, and will be again
            self._unacked_messages.discard(message)
            return False
        return original(self, message)

    ack._incidentflow_guard = True  # type: ignore[attr-defined]
    ack.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    FaustConsumer.ack = ack  # type: ignore[method-assign]


_AFTER_RECOVERY: ContextVar[bool] = ContextVar("incidentflow_after_recovery", default=False)
"""True inside the step that ends a table recovery (and the tasks it starts)."""


def _rewind_after_rebalance() -> None:
    """After Faust seeks the assigned partitions to their committed offsets at the end of a
    rebalance, reads again any partition whose committed offset jumped over records: see
    `Positions` in runtime/positions.py.

    Only that seek counts: Faust also seeks to committed offsets whenever its fetcher runs while
    the flow is stopped, which happens during the recovery itself, before the positions table of a
    newly assigned partition is restored (a stale position there would only read records again,
    but needlessly: thousands of records)."""
    if getattr(FaustConsumer.perform_seek, "_incidentflow_guard", False):
        return
    original = FaustConsumer.perform_seek

    async def perform_seek(self: FaustConsumer) -> None:
        await original(self)
        worker = getattr(self.app, "incidentflow_runtime", None)
        if _AFTER_RECOVERY.get() and worker is not None and worker.positions is not None:
            for topic, _ in await worker.positions.rewind_assigned(self):
                worker.metrics.rewinds.labels(topic).inc()

    perform_seek._incidentflow_guard = True  # type: ignore[attr-defined]
    perform_seek.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    FaustConsumer.perform_seek = perform_seek  # type: ignore[method-assign]
    # The two places where a recovery ends and streams resume: with or without changelog to read.
    for name in ("on_recovery_completed", "_resume_streams"):
        setattr(Recovery, name, _after_recovery(getattr(Recovery, name)))


def _after_recovery(step: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def run(self: Recovery, *args: object, **kwargs: object) -> None:
        token = _AFTER_RECOVERY.set(True)
        try:
            await step(self, *args, **kwargs)
        finally:
            _AFTER_RECOVERY.reset(token)

    run.__wrapped__ = step  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    return run


def _restore_in_bulk() -> None:
    """Once Faust knows where each active changelog partition is to be read from, the runtime's
    `BulkLoad` (runtime/recovery.py) reads it into the stores first and moves those offsets on, so
    Faust's own recovery reads only what is left."""
    if getattr(Recovery._build_offsets, "_incidentflow_guard", False):  # noqa: SLF001
        return
    original = Recovery._build_offsets  # noqa: SLF001

    async def build_offsets(self: Recovery, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        await original(self, consumer, tps, destination, title)
        runtime = getattr(self.app, "incidentflow_runtime", None)
        if title != "active" or runtime is None or not tps:
            return
        # Faust stops the recovery if this step outlasts its request timeout: leave it a quarter.
        budget = float(self.app.conf.broker_request_timeout) * 0.75
        try:
            await runtime.bulk_load.run(tps, destination, self.active_highwaters, budget)
        except Exception:  # Faust's own recovery reads whatever was not loaded
            log.exception("bulk restore failed: Faust's recovery reads the changelogs itself")

    build_offsets._incidentflow_guard = True  # type: ignore[attr-defined]
    build_offsets.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    Recovery._build_offsets = build_offsets  # type: ignore[method-assign]  # noqa: SLF001


def _flush_waits_for_the_handover() -> None:
    """Faust flushes its producer before every commit and when partitions are revoked; with this,
    that flush first waits until the records the runtime's stages wrote are in the producer's
    hands (`Handover` in runtime/batches.py), so that no offset is committed, and no partition
    handed to another worker, before what its records led to is on its way to Kafka.

    A commit's flush waits for what was put before it (`Handover.handed_over`): the offsets it
    commits were taken before it started, from batches whose handling had put everything it
    wrote. Waiting for the hand-over to be empty would hold every commit for as long as the stages
    keep putting, seconds under a steady load. A rebalance's or a stop's flush, which comes after the
    streams stopped, waits until it is empty (`drained`)."""
    if getattr(FaustProducer.flush, "_incidentflow_guard", False):
        return
    original = FaustProducer.flush

    async def flush(self: FaustProducer) -> None:
        runtime = getattr(self.app, "incidentflow_runtime", None)
        if runtime is not None:
            if getattr(self.app, "rebalancing", False) or getattr(self.app, "should_stop", False):
                await runtime.handover.drained()
            else:
                await runtime.handover.handed_over()
        await original(self)

    flush._incidentflow_guard = True  # type: ignore[attr-defined]
    flush.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    FaustProducer.flush = flush  # type: ignore[method-assign]


def _heartbeat_while_assigning() -> None:
    """Keeps the worker's group membership alive while Faust's assignment callback runs, and stops
    the worker before it writes if it was lost there: see runtime/membership.py."""
    listener = ConsumerRebalanceListener
    if getattr(listener.on_partitions_assigned, "_incidentflow_guard", False):
        return
    original = listener.on_partitions_assigned

    async def on_partitions_assigned(self: ConsumerRebalanceListener, assigned: Any) -> None:
        coordinator = self._thread._ensure_consumer()._coordinator  # noqa: SLF001
        await MEMBERSHIP.while_assigning(coordinator, original(self, assigned))

    on_partitions_assigned._incidentflow_guard = True  # type: ignore[attr-defined]
    on_partitions_assigned.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    listener.on_partitions_assigned = on_partitions_assigned  # type: ignore[method-assign]


def _deliver_records_without_tasks() -> None:
    """Faust's consumer hands each record it fetched to the streams with `wait_first(delivery,
    flow suspended)`, which makes four tasks and an `asyncio.wait` for every record (the delivery,
    the flow's suspension, the consumer's stop and crash): about 8% of a worker's CPU per record in
    `bench/fold_throughput.py`. A delivery almost always completes without waiting (the stream's
    buffer has room), so it is run at once; only one that has to wait goes on through Faust's own
    `wait_first`, from where it stopped, so that a suspended flow (a rebalance) or a stop still
    interrupts it as before."""
    if getattr(FaustConsumer.wait_first, "_incidentflow_guard", False):
        return
    original = FaustConsumer.wait_first

    async def wait_first(self: FaustConsumer, *coros: Any, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        if not inspect.iscoroutine(first) or self._stopped.is_set() or self._crashed.is_set():  # noqa: SLF001
            return await original(self, *coros, timeout=timeout)
        others = coros[1:]
        try:
            waiting_on = first.send(None)
        except StopIteration as done:
            _close(others)  # never started: what they would have waited for no longer matters
            return WaitResults([first], [done.value], False)
        except BaseException:
            _close(others)
            raise
        return await original(self, _Resumed(first, waiting_on), *others, timeout=timeout)

    wait_first._incidentflow_guard = True  # type: ignore[attr-defined]
    wait_first.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    FaustConsumer.wait_first = wait_first  # type: ignore[method-assign,assignment]


def _look_at_the_producer_buffer_cheaply() -> None:
    """Faust's consumer asks before every record it hands to a stream whether its producer's buffer
    has more than `max_messages` waiting (`ProducerBuffer.wait_until_ebb`), through a property that
    reads the app's settings each time: about 2% of a worker's CPU per record in
    `bench/fold_throughput.py`, for a buffer the runtime does not use (table changelogs and every
    stage's records go to the producer by runtime/batches.py). The same question is asked of the
    buffer's queue directly; a threaded producer's buffer (`producer_threaded`, which the worker
    does not set) and a buffer past its limit go on through Faust's own method."""
    if getattr(ProducerBuffer.wait_until_ebb, "_incidentflow_guard", False):
        return
    original = ProducerBuffer.wait_until_ebb

    async def wait_until_ebb(self: ProducerBuffer) -> None:
        if self.queue is None and self.pending.qsize() <= self.max_messages:
            return
        await original(self)

    wait_until_ebb._incidentflow_guard = True  # type: ignore[attr-defined]
    wait_until_ebb.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    ProducerBuffer.wait_until_ebb = wait_until_ebb  # type: ignore[method-assign]


def _close(coros: tuple[Any, ...]) -> None:
    for coro in coros:
        if inspect.iscoroutine(coro):
            coro.close()


class _Resumed:
    """A coroutine that has run up to its first wait (it yielded `waiting_on` to the event loop),
    awaited again from there: what it yields goes to the task awaiting this, and what that task
    sends or throws back goes to it, as if it had run in that task from the start."""

    def __init__(self, coro: Any, waiting_on: Any) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.waiting_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # noqa: BLE001  # a cancellation, for one: the coroutine's to handle
                try:
                    value = coro.throw(error)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value
