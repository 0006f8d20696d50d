"""Builds the runtime: the Faust app with the harness installed, its timers and its /metrics page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, EventT, Message, StreamT
from prometheus_client import generate_latest

from incidentflow.config import Integrations, Settings
from incidentflow.metrics.worker import Database, HeapCollector, LagCollector, StoreCollector, WorkerMetrics
from incidentflow.runtime import heap, store, upstream
from incidentflow.runtime.harness import Runtime
from incidentflow.runtime.install import install
from incidentflow.runtime.packed import partition_of
from incidentflow.runtime.pauses import PauseWatch, pause_limit
from incidentflow.runtime.stall import StallWatch, consumer_end_offset
from incidentflow.runtime.store import cache_usage
from incidentflow.topics import Topics

# Prometheus' text format; aiohttp takes the charset apart from the content type (UTF-8 by default).
EXPOSITION_TYPE = "text/plain; version=0.0.4"

log = logging.getLogger("incidentflow.worker")


class RecordStatsOff(Monitor):
    """Faust's monitor without its statistics of each record and event (counts by topic, stream and
    task, timings), which it keeps in memory for its own stats page: the worker exports what it
    measures itself (metrics/worker.py), and those four calls for every record of every stage were
    about 1.5% of the worker's main thread in `bench/fold_throughput.py`. Commits, sends, table
    operations and end offsets are still tracked as Faust does."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any], state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


def create(settings: Settings, integrations: Integrations) -> Runtime:
    """The runtime for these settings, with no stage yet; nothing connects to Kafka until it is started.

    Raises `upstream.UpstreamDrift` when the installed faust, mode, aiokafka or rocksdict is not the
    code the runtime was written against (unless `allow_upstream_drift`)."""
    upstream.check(settings.allow_upstream_drift)
    install(settings.store_memory_mib)
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
        producer_max_batch_size=256 * 1024,  # the batches of runtime/batches.py: a few large ones per flush
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_seconds / 5),
        broker_request_timeout=max(40.0, settings.session_timeout_seconds * 3),
        consumer_max_fetch_size=4 * 1024 * 1024,
        table_standby_replicas=0,
        broker_rebalance_timeout=max(settings.rebalance_timeout_seconds, settings.session_timeout_seconds),
        broker_commit_interval=1.0,
        stream_wait_empty=True,
        Monitor=RecordStatsOff,
    )
    runtime = Runtime(settings=settings, integrations=integrations, app=app, names=Topics.of(settings),
                      metrics=WorkerMetrics())  # fmt: skip
    app.incidentflow_runtime = runtime  # type: ignore[attr-defined]  # found by the patches of runtime/install.py
    _commit_and_watch(runtime)
    _stop_when_records_cannot_be_sent(runtime)
    _stop_on_a_corrupt_store(app)
    _stop_after_a_long_pause(runtime)
    _return_free_memory(runtime)
    _add_metrics_page(runtime)
    return runtime


def inputs_assigned(app: faust.App) -> list[TP]:
    """The input partitions this worker owns now (changelogs aside)."""
    return sorted(tp for tp in app.assignor.assigned_actives() if not tp.topic.endswith("-changelog"))


def owner(runtime: Runtime, table: str) -> Callable[[bytes], bool]:
    """Whether a key of `table` lives in a partition this worker owns now (a scrape exports only those)."""
    changelog = runtime.tables[table].changelog_topic.get_topic_name()
    partitions = runtime.settings.partitions

    def owned(key: bytes) -> bool:
        return TP(changelog, partition_of(key, partitions)) in runtime.app.assignor.assigned_actives()

    return owned


def _commit_and_watch(runtime: Runtime) -> None:
    app = runtime.app
    stalls = StallWatch()

    @app.timer(5.0)  # type: ignore[untyped-decorator]  # faust declares no types for timer
    async def commit_and_watch() -> None:
        try:
            await runtime.commit_handled()
            bounds = await runtime.offsets.read(inputs_assigned(app))
            for tp, nxt, _ in stalls.check(app, runtime.commits.completed, bounds):
                # Faust's `seek` changes aiokafka's fetcher from this thread while the consumer's
                # thread may be reading it; `seek_wait` seeks on the consumer's thread.
                await app.consumer.seek_wait({tp: nxt})
                runtime.metrics.rewinds.labels(tp.topic).inc()
        except Exception:  # never stop the timer that lets commits move
            log.exception("the commit and stall checks failed")

    @app.on_before_shutdown.connect
    async def stop_offsets(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await runtime.offsets.stop()


def _stop_on_a_corrupt_store(app: faust.App) -> None:
    """A store found corrupt outside a record's handler (the table recovery reads each store's last
    offset when partitions are assigned) stops the worker as a damaged read in a handler does: its
    stores marked, exit status 74, rebuilt from their changelogs at the next start. Any other crash
    stays the app's."""
    crash = app.crash

    async def crash_unless_corrupt(reason: BaseException) -> None:
        if store.is_corruption(reason):
            store.fail_on_corruption(reason)
        await crash(reason)

    app.crash = crash_unless_corrupt  # type: ignore[method-assign]


def _stop_after_a_long_pause(runtime: Runtime) -> None:
    """From the worker's start, a process that stood still past its session stops (runtime/pauses.py)."""
    runtime.pauses = PauseWatch(pause_limit(runtime.settings.session_timeout_seconds))

    @runtime.app.task  # type: ignore[untyped-decorator]  # faust declares no types for task
    async def watch_pauses() -> None:
        assert runtime.pauses is not None  # noqa: S101  # set just above; for the type checker
        runtime.pauses.start()


def _stop_when_records_cannot_be_sent(runtime: Runtime) -> None:
    """A worker whose records could not be handed to the producer (the broker gone for longer than
    the producer's request timeout) commits nothing any more (`Handover`): it stops with the error,
    to be started again from its committed offsets, where those records are written again."""
    app = runtime.app

    def stop(error: Exception) -> None:
        log.critical("records could not be handed to the producer (%r): the worker stops, to start again "
                     "from its committed offsets", error)  # fmt: skip
        asyncio.ensure_future(app.crash(error))

    runtime.handover.on_failure = stop


def _return_free_memory(runtime: Runtime) -> None:
    """Gives the C heap's free pages back to the system once a minute (see runtime/heap.py)."""
    if not heap.available():
        return

    @runtime.app.timer(heap.TRIM_EVERY_SECONDS)  # type: ignore[untyped-decorator]  # faust declares no types for timer
    async def return_free_memory() -> None:
        await asyncio.get_running_loop().run_in_executor(None, heap.trim)


def _add_metrics_page(runtime: Runtime) -> None:
    app = runtime.app

    def lags() -> list[tuple[str, int, int]]:
        """End offset minus committed offset of every input partition this worker owns (changelogs aside).

        A partition the consumer has not fetched since the last rebalance has no end offset of its
        own: the broker's, asked every 5 s by the stall watch, stands in. One never committed counts
        from the first offset in the log."""
        consumer = app.consumer
        found = []
        for tp in inputs_assigned(app):
            start, end = runtime.offsets.last.get(tp, (0, None))
            end = consumer_end_offset(consumer, tp) or end
            committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]  # noqa: SLF001  # no public accessor
            if end is not None:
                found.append((tp.topic, tp.partition, max(0, end - (start if committed is None else committed))))
        return found

    def databases() -> Iterator[Database]:
        for table in runtime.tables.values():
            # Faust's RocksDB store keeps one open database per partition; other stores have none.
            yield from getattr(table.data, "_dbs", {}).values()

    runtime.metrics.add_series(LagCollector(lags))
    runtime.metrics.add_series(HeapCollector(heap.figures))
    runtime.metrics.add_series(StoreCollector(databases, lambda: len(store.rebuilt)))
    runtime.metrics.watch_store(cache_usage, runtime.settings.store_memory_mib * 1024 * 1024)

    @app.page("/metrics")
    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.bytes(generate_latest(runtime.metrics.registry), content_type=EXPOSITION_TYPE)
