"""The worker's Prometheus metrics: processing counters, and MTTR and open incidents read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Protocol

import rocksdict
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from incidentflow.domain import metrics


class Database(Protocol):
    """What `StoreCollector` reads of a RocksDB database (a rocksdict `Rdict`)."""

    def property_int_value(self, name: str) -> int | None: ...


class SeriesCollector(Collector):
    """Every metric series this worker owns right now, read at every scrape: MTTR, resolved and open
    incidents per (service, env, severity); changes, deployment frequency, lead time, change failure
    ratio and failed deployment recovery time per (service, env).

    `owned` answers for the partitions assigned to this worker at the moment of the scrape, so a
    series appears on exactly one worker and a rebalance leaves no stale series behind.
    """

    def __init__(
        self,
        index: Callable[[], Iterable[tuple[bytes, bytes]]],
        day: Callable[[str, date], metrics.Day],
        owned: Callable[[bytes], bool],
        now: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._day = day
        self._owned = owned
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        mttr = GaugeMetricFamily(
            "incidentflow_mttr_seconds",
            "Mean time to restore of incidents finally resolved in the trailing window.",
            labels=["service", "env", "severity", "window"],
        )
        resolved = GaugeMetricFamily(
            "incidentflow_incidents_resolved",
            "Incidents finally resolved in the trailing window (the MTTR's sample size).",
            labels=["service", "env", "severity", "window"],
        )
        quantiles = GaugeMetricFamily(
            "incidentflow_time_to_restore_seconds",
            "Median (quantile 0.5) and p90 of the time to restore of incidents finally resolved in the trailing "
            "window, within 1% (a log-bucket sketch).",
            labels=["service", "env", "severity", "window", "quantile"],
        )
        open_ = GaugeMetricFamily(
            "incidentflow_incidents_open", "Incidents open now.", labels=["service", "env", "severity"]
        )
        changes = GaugeMetricFamily(
            "incidentflow_changes",
            "Changes whose change time (first processing or done) falls in the trailing window.",
            labels=["service", "env", "window"],
        )
        frequency = GaugeMetricFamily(
            "incidentflow_deployment_frequency_per_day",
            "Changes (deployments) per day over the trailing window: its changes divided by its days.",
            labels=["service", "env", "window"],
        )
        lead = GaugeMetricFamily(
            "incidentflow_lead_time_seconds",
            "Median (quantile 0.5) and p90 of the lead time (change time - earliest commit) of the changes in the "
            "trailing window that have a commit time, within 1%.",
            labels=["service", "env", "window", "quantile"],
        )
        recovery = GaugeMetricFamily(
            "incidentflow_failed_deployment_recovery_seconds",
            "Median (quantile 0.5) and p90 of the failed deployment recovery time (change time - resolution of the "
            "last of its live correlated incidents) of the failed changes that recovered in the trailing window, "
            "within 1%.",
            labels=["service", "env", "window", "quantile"],
        )
        recovered = GaugeMetricFamily(
            "incidentflow_failed_deployments_recovered",
            "Failed changes that recovered in the trailing window (the recovery time's sample size).",
            labels=["service", "env", "window"],
        )
        ratio = GaugeMetricFamily(
            "incidentflow_change_failure_ratio",
            "Of those changes, the share that failed: at least one live correlation to an incident, or undone by a "
            "rollback.",
            labels=["service", "env", "window"],
        )
        rework = GaugeMetricFamily(
            "incidentflow_rework_ratio",
            "Deployment rework rate: of those changes, the share that were unplanned (rollbacks, hotfixes, reverts) "
            "or deployed while an incident of the same service and env was open.",
            labels=["service", "env", "window"],
        )
        rollbacks = GaugeMetricFamily(
            "incidentflow_rollbacks",
            "Of those changes, the rollbacks (by their kind, or by deploying an earlier version again).",
            labels=["service", "env", "window"],
        )
        now = self._now()
        recent = set(metrics.window_days(now, max(metrics.WINDOWS.values())))
        for key, value in list(self._index()):
            if not self._owned(key):
                continue
            index = metrics.SeriesIndex.model_validate_json(value)
            found = [self._day(key.decode(), day) for day in index.days if day in recent]
            if index.metric == "mttr":
                open_.add_metric([index.service, index.env, index.severity], index.open)
            for window, span in metrics.WINDOWS.items():
                days = set(metrics.window_days(now, span))
                totals = metrics.totals((day for day in found if day.on in days), now, span)
                if index.metric == "mttr":
                    resolved.add_metric([index.service, index.env, index.severity, window], totals.count)
                    if totals.mean_seconds is not None:
                        mttr.add_metric([index.service, index.env, index.severity, window], totals.mean_seconds)
                        for q in ("0.5", "0.9"):
                            found_q = totals.quantile(float(q))
                            if found_q is not None:
                                quantiles.add_metric([index.service, index.env, index.severity, window, q], found_q)
                elif index.metric == "changes":
                    changes.add_metric([index.service, index.env, window], totals.count)
                    frequency.add_metric([index.service, index.env, window], totals.count / span.days)
                    for q in ("0.5", "0.9"):
                        found_q = totals.quantile(float(q))
                        if found_q is not None:
                            lead.add_metric([index.service, index.env, window, q], found_q)
                    rollbacks.add_metric([index.service, index.env, window], totals.rollbacks)
                    if totals.count:
                        ratio.add_metric([index.service, index.env, window], totals.failed / totals.count)
                        rework.add_metric([index.service, index.env, window], totals.reworked / totals.count)
                elif index.metric == "recovery":
                    recovered.add_metric([index.service, index.env, window], totals.count)
                    for q in ("0.5", "0.9"):
                        found_q = totals.quantile(float(q))
                        if found_q is not None:
                            recovery.add_metric([index.service, index.env, window, q], found_q)
        yield mttr
        yield quantiles
        yield resolved
        yield open_
        yield changes
        yield frequency
        yield lead
        yield ratio
        yield rework
        yield rollbacks
        yield recovery
        yield recovered


class LagCollector(Collector):
    """Kafka consumer lag of this worker, per input partition it owns now: end offset - committed offset."""

    def __init__(self, lags: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self._lags = lags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "incidentflow_consumer_lag",
            "Records not yet committed by this worker, per input topic and partition it owns now.",
            labels=["topic", "partition"],
        )
        for topic, partition, value in self._lags():
            lag.add_metric([topic, str(partition)], value)
        yield lag


class StoreCollector(Collector):
    """RocksDB memory outside the shared cache's own blocks, and files, summed over every open database.

    Read at scrape time from RocksDB's own properties, so that a worker's memory can be told apart:
    what the shared cache holds is `incidentflow_store_cache_bytes`, what the memtables and the
    table readers hold is here, and the rest of the process is Python and the allocator.
    """

    MEMORY = {"memtables": "rocksdb.cur-size-all-mem-tables", "table_readers": "rocksdb.estimate-table-readers-mem"}
    LEVELS = 7

    def __init__(self, databases: Callable[[], Iterable[Database]], rebuilt: Callable[[], int] = lambda: 0) -> None:
        self._databases = databases
        self._rebuilt = rebuilt

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield CounterMetricFamily(
            "incidentflow_store_rebuilds",
            "Table stores found corrupt on opening and set aside since the worker started (each restored from its "
            "changelog).",
            value=self._rebuilt(),
        )
        memory = GaugeMetricFamily(
            "incidentflow_store_memory_bytes", "RocksDB memory of every open table store, by kind.", labels=["kind"]
        )
        files = GaugeMetricFamily("incidentflow_store_sst_files", "Live SST files of every open table store.")
        databases = GaugeMetricFamily("incidentflow_store_databases", "Open RocksDB databases (tables x partitions).")
        totals = dict.fromkeys(self.MEMORY, 0)
        count = opened = 0
        for db in self._databases():
            try:
                memory_of = {kind: db.property_int_value(name) or 0 for kind, name in self.MEMORY.items()}
                files_of = sum(db.property_int_value(f"rocksdb.num-files-at-level{n}") or 0 for n in range(self.LEVELS))
            except rocksdict.DbClosedError:
                continue  # closed under us: it holds nothing any more, and the page must still answer
            opened += 1
            count += files_of
            for kind, value in memory_of.items():
                totals[kind] += value
        for kind, value in totals.items():
            memory.add_metric([kind], value)
        files.add_metric([], count)
        databases.add_metric([], opened)
        yield memory
        yield files
        yield databases


class HeapCollector(Collector):
    """The C heap (Python's large objects, RocksDB and every extension): bytes in use and kept free."""

    def __init__(self, figures: Callable[[], dict[str, int]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        heap = GaugeMetricFamily(
            "incidentflow_heap_bytes",
            "C heap of the worker (glibc): bytes in use, and bytes free but still held by the allocator.",
            labels=["state"],
        )
        for state, value in self._figures().items():
            heap.add_metric([state], value)
        yield heap


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.processed = Counter(
            "incidentflow_events_processed",
            "Records handled by the worker, by topic and outcome.",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.rewinds = Counter(
            "incidentflow_offset_rewinds",
            "Times a partition was read again from the last offset this worker group recorded as processed,"
            " because the consumer was about to skip records (see docs/semantics.md).",
            ["topic"],
            registry=self.registry,
        )

    def watch_store(self, usage: Callable[[], float], budget: float) -> None:
        """Exports the shared RocksDB cache's usage (memtables included) and its budget, read at scrape time."""
        Gauge("incidentflow_store_cache_bytes", "Bytes held by the worker's shared RocksDB block cache, memtables "
              "included.", registry=self.registry).set_function(usage)  # fmt: skip
        Gauge("incidentflow_store_cache_budget_bytes", "The shared RocksDB cache's capacity (STORE_MEMORY_MIB).",
              registry=self.registry).set(budget)  # fmt: skip

    def add_series(self, collector: Collector) -> None:
        self.registry.register(collector)
