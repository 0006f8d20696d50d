"""The incident fold: canonical alerts -> aggregate state table -> `incidentflow.incidents`."""

from __future__ import annotations

from faust.types import StreamT
from pydantic import ValidationError

from incidentflow.domain import aggregate, metrics
from incidentflow.domain import correlation as corr
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import Incident
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.correlate import rules_of, send_sides, window_of
from incidentflow.stream.packed import Record


def register(worker: Worker) -> None:
    names = worker.names
    limits = aggregate.Limits(max_events=worker.settings.max_events_per_aggregate)
    states = worker.table("aggregates", "AggregateState JSON by aggregate_id")
    rules = rules_of(worker)

    async def fold_one(message: Record) -> str:
        try:
            alert = AlertEvent.model_validate_json(message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a canonical alert event: {error}") from None
        if message.key != alert.aggregate_id.encode():
            # State lives in the partition of the aggregate_id; a record keyed otherwise is re-keyed.
            await worker.send(names.alerts, alert.aggregate_id, message.value or b"")
            return "rekeyed"
        key = alert.aggregate_id.encode()
        stored = states.get(key)
        state = aggregate.AggregateState.model_validate_json(stored) if stored else aggregate.AggregateState()
        applied = aggregate.apply(state, alert, limits)
        if applied.outcome == "too_late":
            raise DeadLetter("too_late: older than the aggregate's compacted history (see docs/semantics.md)")
        if applied.outcome == "duplicate":
            # A redelivery: what the current state led to is published again, in case a crash lost
            # it after the state was saved. Every consumer takes the newest version, so this is harmless.
            current = applied.state.incident
            if current is not None:
                await publish(None, current, republish=True)
            return "duplicate"
        states[key] = applied.state.model_dump_json().encode()
        if applied.changed and applied.after is not None:
            await publish(applied.before, applied.after, republish=False)
        return "applied"

    async def publish(before: Incident | None, after: Incident, republish: bool) -> None:
        await worker.send(names.incidents, after.aggregate_id, after.model_dump_json())
        for contribution in metrics.contributions(None if republish else before, after):
            await worker.send(names.contributions, contribution.series, contribution.model_dump_json())
        lookback, lookahead = window_of(worker, after.integration)
        side = corr.incident_side(after, lookback, lookahead)
        old = corr.incident_side(before, lookback, lookahead) if before is not None else None
        if not rules.buckets(after.labels) and (before is None or not rules.buckets(before.labels)):
            return  # no scope label: it can never correlate
        if republish or old is None or old.view() != side.view():
            await worker.send(names.suspects, after.aggregate_id, corr.Side(incident=side).model_dump_json())
            await send_sides(worker, before.labels if before else {}, after.labels, corr.Side(incident=side))

    @worker.app.agent(worker.topic(names.alerts), name="fold")
    async def fold(stream: StreamT[bytes]) -> None:
        """Runs for every alert event: folds it into its aggregate and publishes what changed."""
        await worker.consume(stream, fold_one)
