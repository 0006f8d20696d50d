"""Metric series: incident contributions -> one table row per (service, severity) -> `incidentflow.metrics`."""

from __future__ import annotations

from faust.types import EventT, StreamT
from pydantic import ValidationError

from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.context import DeadLetter, Worker


def register(worker: Worker) -> None:
    names = worker.names
    series = worker.app.Table(
        "series", key_type=bytes, value_type=bytes,
        partitions=worker.settings.partitions, help="SeriesState JSON by service|severity",
    )  # fmt: skip
    worker.tables["series"] = series

    async def record_one(event: EventT[bytes]) -> str:
        try:
            contribution = metrics.Contribution.model_validate_json(event.message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a metric contribution: {error}") from None
        if event.message.key != contribution.series.encode():
            await worker.send(names.contributions, contribution.series, event.message.value or b"")
            return "rekeyed"
        key = contribution.series.encode()
        stored = series.get(key)
        state = (
            metrics.SeriesState.model_validate_json(stored)
            if stored
            else metrics.SeriesState(service=contribution.service, severity=contribution.severity)
        )
        new, days = metrics.record(state, contribution)
        if new is state:
            return "duplicate"
        series[key] = new.model_dump_json().encode()
        for day in sorted(days):
            bucket = metrics.bucket(new, day)
            row = MetricRow(metric="mttr", service=new.service, severity=new.severity, day=day.isoformat(),
                            **bucket.model_dump())  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.contributions), name="series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every incident contribution: keeps its series and publishes changed day buckets."""
        async for event in stream.events():
            await worker.handle(event, record_one)
