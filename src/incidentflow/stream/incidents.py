"""The incident fold: canonical alerts -> aggregate state table -> `incidentflow.incidents`."""

from __future__ import annotations

from faust.types import EventT, StreamT
from pydantic import ValidationError

from incidentflow.domain import aggregate, metrics
from incidentflow.domain.events import AlertEvent
from incidentflow.stream.context import DeadLetter, Worker


def register(worker: Worker) -> None:
    names = worker.names
    limits = aggregate.Limits(max_events=worker.settings.max_events_per_aggregate)
    states = worker.table("aggregates", "AggregateState JSON by aggregate_id")

    async def fold_one(event: EventT[bytes]) -> str:
        try:
            alert = AlertEvent.model_validate_json(event.message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a canonical alert event: {error}") from None
        if event.message.key != alert.aggregate_id.encode():
            # State lives in the partition of the aggregate_id; a record keyed otherwise is re-keyed.
            await worker.send(names.alerts, alert.aggregate_id, event.message.value or b"")
            return "rekeyed"
        key = alert.aggregate_id.encode()
        stored = states.get(key)
        state = aggregate.AggregateState.model_validate_json(stored) if stored else aggregate.AggregateState()
        applied = aggregate.apply(state, alert, limits)
        if applied.outcome == "too_late":
            raise DeadLetter("too_late: older than the aggregate's compacted history (see docs/semantics.md)")
        if applied.outcome == "duplicate":
            return "duplicate"
        states[key] = applied.state.model_dump_json().encode()
        if applied.changed and applied.after is not None:
            await worker.send(names.incidents, alert.aggregate_id, applied.after.model_dump_json())
            for contribution in metrics.contributions(applied.before, applied.after):
                await worker.send(names.contributions, contribution.series, contribution.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.alerts), name="fold")
    async def fold(stream: StreamT[bytes]) -> None:
        """Runs for every alert event: folds it into its aggregate and publishes what changed."""
        async for event in stream.events():
            await worker.handle(event, fold_one)
