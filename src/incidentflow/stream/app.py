"""Builds the worker: the Faust app with its topics, tables, agents and the /metrics page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import Message
from prometheus_client import generate_latest

from incidentflow.config import Integrations, Settings
from incidentflow.domain import metrics
from incidentflow.metrics.worker import (
    ChangeCollector,
    Database,
    HeapCollector,
    LagCollector,
    SeriesCollector,
    StoreCollector,
    WorkerMetrics,
)
from incidentflow.stream import correlate, heap, incidents, normalize, series
from incidentflow.stream.context import Worker
from incidentflow.stream.series import Days, E, F
from incidentflow.stream.stall import StallWatch, consumer_end_offset
from incidentflow.stream.store import cache_usage, share_one_memory_budget
from incidentflow.topics import Topics

# Prometheus' text format; aiohttp takes the charset apart from the content type (UTF-8 by default).
EXPOSITION_TYPE = "text/plain; version=0.0.4"


log = logging.getLogger("incidentflow.worker")

TABLES = (
    "positions", "aggregates", "series-members", "series-days", "series-index", "changes", "correlation-scope",
    "correlation-suspects", "change-members", "change-days", "change-index",
)  # fmt: skip
"""Every table of the worker: their changelog topics are created before it starts (see `ensure_topics`)."""


def create_worker(settings: Settings, integrations: Integrations) -> Worker:
    """The worker for these settings; nothing connects to Kafka until it is started."""
    _never_commit_skipped_messages()
    _rewind_after_rebalance()
    _send_changelog_straight()
    heap.tune()  # before RocksDB's and Faust's threads start (stream/heap.py)
    share_one_memory_budget(settings.store_memory_mib)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_seconds / 5),
        broker_request_timeout=max(40.0, settings.session_timeout_seconds * 3),
        consumer_max_fetch_size=4 * 1024 * 1024,
        table_standby_replicas=0,
        broker_rebalance_timeout=max(settings.rebalance_timeout_seconds, settings.session_timeout_seconds),
        broker_commit_interval=1.0,
        stream_wait_empty=True,
    )
    worker = Worker(settings=settings, integrations=integrations, app=app,
                    names=Topics.of(settings), metrics=WorkerMetrics())  # fmt: skip
    app.incidentflow_worker = worker  # type: ignore[attr-defined]  # found by the consumer patch below
    normalize.register(worker)
    incidents.register(worker)
    series.register(worker)
    correlate.register(worker)
    series.register_changes(worker)
    _add_metrics_page(worker)
    _return_free_memory(worker)

    stalls = StallWatch()

    @app.timer(5.0)  # type: ignore[untyped-decorator]  # faust declares no types for timer
    async def commit_and_watch() -> None:
        try:
            await worker.commit_handled()
            bounds = await worker.offsets.read(inputs_assigned(app))
            for tp, nxt, _ in stalls.check(app, worker.completed, bounds):
                # Faust's `seek` changes aiokafka's fetcher from this thread while the consumer's
                # thread may be reading it: a worker died of that (KeyError in `fetched_records`).
                # `seek_wait` seeks on the consumer's thread.
                await app.consumer.seek_wait({tp: nxt})
                worker.metrics.rewinds.labels(tp.topic).inc()
        except Exception:  # never stop the timer that lets commits move
            log.exception("the commit and stall checks failed")

    @app.on_before_shutdown.connect
    async def stop_offsets(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await worker.offsets.stop()

    worker.metrics.watch_store(cache_usage, settings.store_memory_mib * 1024 * 1024)
    if set(worker.tables) != set(TABLES):
        raise RuntimeError(f"TABLES is out of date: the worker has {sorted(worker.tables)}")
    return worker


def inputs_assigned(app: faust.App) -> list[faust.types.TP]:
    """The input partitions this worker owns now (changelogs aside)."""
    return sorted(tp for tp in app.assignor.assigned_actives() if not tp.topic.endswith("-changelog"))


def _never_commit_skipped_messages() -> None:
    """Keeps Faust from committing the offsets of records it skipped during a rebalance.

    When a rebalance starts, Faust (0.15) clears its queues and skips the records its streams still
    take from before the new generation, but it *acks* them on the way out ("ack the filtered
    message, otherwise the lag would increase"). Their offsets are then committed as processed, and
    the partition's next owner starts after records nobody processed: our 3-worker correlation
    test lost 39 raw records that way during a start-up rebalance. Refusing those acks leaves the
    committed offset before them, so the next owner processes them (our folds are idempotent).
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
    FaustConsumer.ack = ack  # type: ignore[method-assign]


def _send_changelog_straight() -> None:
    """Table writes made while a worker handles a record skip Faust's producer buffer: their
    changelog records are sent when the record is done (`Changelog` in stream/context.py). Writes
    of other shapes (a serializer other than raw bytes) take Faust's own path."""
    if getattr(Collection.send_changelog, "_incidentflow_guard", False):
        return
    original = Collection.send_changelog

    def send_changelog(self: Collection, partition: int | None, key: object, value: object,
                       key_serializer: object = None, value_serializer: object = None) -> object:  # fmt: skip
        worker = getattr(self.app, "incidentflow_worker", None)
        raw = (key_serializer or self.key_serializer) == "raw" and (value_serializer or self.value_serializer) == "raw"
        if (worker is None or partition is None or not raw or not isinstance(key, bytes)
                or not (value is None or isinstance(value, bytes))):  # fmt: skip
            return original(self, partition, key, value, key_serializer, value_serializer)  # type: ignore[arg-type]
        worker.changelog.add(self.changelog_topic.get_topic_name(), partition, key, value, self.data)
        return _queued(partition)  # Faust's callers read the partition the record goes to

    send_changelog._incidentflow_guard = True  # type: ignore[attr-defined]
    Collection.send_changelog = send_changelog  # type: ignore[assignment,method-assign]


@dataclass(frozen=True)
class _Queued:
    """What Faust's table reads of the future `send_changelog` returns: `.message.partition`."""

    partition: int

    @property
    def message(self) -> _Queued:
        return self


@cache
def _queued(partition: int) -> _Queued:
    return _Queued(partition)


_AFTER_RECOVERY: ContextVar[bool] = ContextVar("incidentflow_after_recovery", default=False)
"""True inside the step that ends a table recovery (and the tasks it starts)."""


def _rewind_after_rebalance() -> None:
    """After Faust seeks the assigned partitions to their committed offsets at the end of a
    rebalance, reads again any partition whose committed offset jumped over records: see
    `Positions` in stream/context.py.

    Only that seek counts: Faust also seeks to committed offsets whenever its fetcher runs while
    the flow is stopped, which happens during the recovery itself, before the positions table of a
    newly assigned partition is restored (a stale position there would only read records again,
    but needlessly: thousands in our 3-worker test)."""
    if getattr(FaustConsumer.perform_seek, "_incidentflow_guard", False):
        return
    original = FaustConsumer.perform_seek

    async def perform_seek(self: FaustConsumer) -> None:
        await original(self)
        worker = getattr(self.app, "incidentflow_worker", None)
        if _AFTER_RECOVERY.get() and worker is not None and worker.positions is not None:
            for topic, _ in await worker.positions.rewind_assigned(self):
                worker.metrics.rewinds.labels(topic).inc()

    perform_seek._incidentflow_guard = True  # type: ignore[attr-defined]
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

    return run


def _return_free_memory(worker: Worker) -> None:
    """Gives the C heap's free pages back to the system once a minute (see stream/heap.py)."""
    if not heap.available():
        return

    @worker.app.timer(heap.TRIM_EVERY_SECONDS)  # type: ignore[untyped-decorator]  # faust declares no types for timer
    async def return_free_memory() -> None:
        await asyncio.get_running_loop().run_in_executor(None, heap.trim)


def _add_metrics_page(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    index, change_index = worker.tables["series-index"], worker.tables["change-index"]
    days = Days(worker.tables["series-days"], metrics.DayFigures, metrics.Resolution)
    change_days = Days(worker.tables["change-days"], metrics.ChangeDayFigures, metrics.ChangeEntry)

    def partition_of(key: bytes) -> int:
        return int(murmur2(key) & 0x7FFFFFFF) % settings.partitions

    def scraped(of: Days[F, E]) -> Callable[[str, date], metrics.Day[F, E]]:
        """A day of a series, its entries read from the partition of the series (a scrape is outside any agent)."""

        def day(series: str, on: date) -> metrics.Day[F, E]:
            return metrics.Day(on=on, figures=of.figures(series, on),
                               entries=lambda: of.entries(series, on, partition=partition_of(series.encode())))  # fmt: skip

        return day

    def owner(table: faust.types.TableT[bytes, bytes]) -> Callable[[bytes], bool]:
        changelog = table.changelog_topic.get_topic_name()

        def owned(key: bytes) -> bool:
            return faust.types.TP(changelog, partition_of(key)) in app.assignor.assigned_actives()

        return owned

    def now() -> datetime:
        return datetime.now(UTC)

    def lags() -> list[tuple[str, int, int]]:
        """End offset minus committed offset of every input partition this worker owns (changelogs aside).

        A partition the consumer has not fetched since the last rebalance has no end offset of its
        own: the broker's, asked every 5 s by the stall watch, stands in (it is such a partition
        that may be stuck). One never committed counts from the first offset in the log."""
        consumer = app.consumer
        found = []
        for tp in inputs_assigned(app):
            start, end = worker.offsets.last.get(tp, (0, None))
            end = consumer_end_offset(consumer, tp) or end
            committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]  # noqa: SLF001  # no public accessor
            if end is not None:
                found.append((tp.topic, tp.partition, max(0, end - (start if committed is None else committed))))
        return found

    def databases() -> Iterator[Database]:
        for table in worker.tables.values():
            # Faust's RocksDB store keeps one open database per partition; other stores have none.
            yield from getattr(table.data, "_dbs", {}).values()

    worker.metrics.add_series(LagCollector(lags))
    worker.metrics.add_series(HeapCollector(heap.figures))
    worker.metrics.add_series(StoreCollector(databases))
    worker.metrics.add_series(
        SeriesCollector(index=lambda: index.data.items(), day=scraped(days), owned=owner(index), now=now)
    )
    worker.metrics.add_series(
        ChangeCollector(
            index=lambda: change_index.data.items(), day=scraped(change_days), owned=owner(change_index), now=now
        )
    )

    @app.page("/metrics")
    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.bytes(generate_latest(worker.metrics.registry), content_type=EXPOSITION_TYPE)
