"""Builds the worker: the runtime with the product's stages, their tables and the series on /metrics.

raw --normalize--> alerts --fold--> incidents, contributions, scope, suspects, history
                   changes, verdicts, history and lead verdicts --change fold--> contributions, scope, history, lead
                   pushes to lead
                   history --deployment history--> history verdicts
                   lead (pushes and requests) --lead time--> lead verdicts
                   scope --correlation scope--> suspects
                   suspects --correlation suspects--> correlations, verdicts
                   contributions --series--> metrics
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from incidentflow.config import Integrations, Settings
from incidentflow.domain import aggregate, metrics
from incidentflow.metrics.worker import SeriesCollector
from incidentflow.runtime import app as runtime_app
from incidentflow.runtime.cloudevents import CloudEventHeaders
from incidentflow.runtime.harness import Runtime
from incidentflow.runtime.packed import partition_of
from incidentflow.runtime.tables import Table
from incidentflow.stream import changes, fold, history, lead, scope, series, suspects
from incidentflow.stream.normalize import Normalize
from incidentflow.stream.sides import Correlating
from incidentflow.topics import Topics

TABLES = ("positions", *fold.TABLES, *series.TABLES, *changes.TABLES, *scope.TABLES, *suspects.TABLES,
          *history.TABLES, *lead.TABLES)  # fmt: skip
"""Every table of the worker: their changelog topics are created before it starts (see `ensure_topics`)."""


def create_worker(settings: Settings, integrations: Integrations) -> Runtime:
    """The worker for these settings; nothing connects to Kafka until it is started."""
    runtime = runtime_app.create(settings, integrations)
    names, correlating = runtime.names, Correlating.of(settings, integrations)

    def tables(of: dict[str, str]) -> dict[str, Table]:
        return {name: runtime.table(name, help_) for name, help_ in of.items()}

    runtime.headers = cloud_event_headers(names)
    limits = aggregate.Limits(max_events=settings.max_events_per_aggregate)
    series_tables = tables(series.TABLES)
    runtime.agent(Normalize(runtime, names, settings.cdevents_integration, settings.max_labels,
                            settings.cdevents_default_severity, settings.change_type_label))  # fmt: skip
    horizon = settings.state_horizon_days
    runtime.agent(fold.Fold(runtime, names, tables(fold.TABLES), limits, correlating, horizon_days=horizon))
    runtime.agent(series.Series(runtime, names, series_tables))
    runtime.agent(scope.Scope(runtime, names, tables(scope.TABLES), correlating))
    runtime.agent(suspects.Suspects(runtime, names, tables(suspects.TABLES), correlating))
    runtime.agent(changes.Changes(runtime, names, tables(changes.TABLES), correlating, horizon_days=horizon))
    runtime.agent(history.DeploymentHistory(runtime, names, tables(history.TABLES), horizon_days=horizon))
    runtime.agent(lead.LeadTime(runtime, names, tables(lead.TABLES), horizon_days=horizon))
    _export_series(runtime, series_tables)
    if set(runtime.tables) != set(TABLES):
        raise RuntimeError(f"TABLES is out of date: the worker has {sorted(runtime.tables)}")
    return runtime


def cloud_event_headers(names: Topics) -> CloudEventHeaders:
    """The CloudEvents type of each topic the worker writes for its users (`dev.incidentflow.<record>.v1`)."""
    records = {names.alerts: "alert", names.changes: "change", names.incidents: "incident",
               names.correlations: "correlation", names.metrics: "metric", names.deadletter: "deadletter"}  # fmt: skip
    return CloudEventHeaders(
        f"/incidentflow/{names.namespace}", {t: f"dev.incidentflow.{r}.v1" for t, r in records.items()}
    )


def _export_series(runtime: Runtime, tables: dict[str, Table]) -> None:
    """The series on /metrics: each read, at scrape time, from the partition that owns it."""
    days, partitions = series.Days(tables["series-days"]), runtime.settings.partitions

    def day(key: str, on: date) -> metrics.Day:
        partition = partition_of(key.encode(), partitions)
        return metrics.Day(on=on, figures=days.figures(key, on, partition),
                           entries=lambda: days.entries(key, on, partition=partition))  # fmt: skip

    def now() -> datetime:
        return datetime.now(UTC)

    runtime.metrics.add_series(SeriesCollector(index=lambda: runtime.items("series-index"), day=day,
                                               owned=runtime_app.owner(runtime, "series-index"), now=now))  # fmt: skip
