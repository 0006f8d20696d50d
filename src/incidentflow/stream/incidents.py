"""The incident fold: canonical alerts -> aggregate state table -> `incidentflow.incidents`.

Each batch an agent takes is folded aggregate by aggregate: an aggregate's state is read once, every
event of the batch applied to it in turn, and the state saved and the change published once, from
the incident before the batch to the incident after it. An alert storm (a flapping check, a
monitor retrying) then costs one write and one incident record per batch, not one per event, and
everything downstream (metric contributions, correlation sides) follows the same count. Consumers
of `incidentflow.incidents` see the latest version of each batch; every version is a whole record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from faust.types import EventT, StreamT
from pydantic import ValidationError

from incidentflow.domain import aggregate, metrics
from incidentflow.domain import correlation as corr
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import Incident
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.correlate import rules_of, send_sides, window_of
from incidentflow.stream.packed import Record

log = logging.getLogger("incidentflow.worker")


@dataclass
class Pending:
    """One aggregate touched by the batch being handled: its state as the batch leaves it."""

    state: aggregate.AggregateState
    before: Incident | None
    """The incident as it was before the batch."""
    event: EventT[bytes]
    """A record of the aggregate in this batch: its partition is the aggregate's."""
    records: list[Record] = field(default_factory=list)
    changed: bool = False
    redelivered: bool = False


def register(worker: Worker) -> None:
    names = worker.names
    limits = aggregate.Limits(max_events=worker.settings.max_events_per_aggregate)
    states = worker.table("aggregates", "AggregateState JSON by aggregate_id")
    rules = rules_of(worker)
    batch: dict[tuple[int, bytes], Pending] = {}
    """The aggregates of the batch being handled: each read and parsed once, written and published
    once when the batch is done (`finish`), however many of its events the batch holds."""

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
        pending = batch.get((message.partition, key))
        if pending is None:
            stored = states.get(key)
            state = aggregate.AggregateState.model_validate_json(stored) if stored else aggregate.AggregateState()
            event = worker.current_event()
            assert event is not None  # noqa: S101  # handlers run inside handle_batch; for the type checker
            pending = batch[(message.partition, key)] = Pending(state=state, before=state.incident, event=event)
        applied = aggregate.apply(pending.state, alert, limits)
        if applied.outcome == "too_late":
            raise DeadLetter("too_late: older than the aggregate's compacted history (see docs/semantics.md)")
        pending.records.append(message)
        if applied.outcome == "duplicate":
            # A redelivery: what the current state led to is published again, in case a crash lost
            # it after the state was saved. Every consumer takes the newest version, so this is harmless.
            pending.redelivered = True
            return "duplicate"
        pending.state, pending.changed = applied.state, True
        return "applied"

    async def finish() -> None:
        """Runs once the batch's records are handled: saves each aggregate it changed and publishes
        the change from before the batch to after it (one incident record, its contributions and
        correlation sides), or republishes the current incident of one it saw redelivered."""
        touched = list(batch.items())
        batch.clear()
        for (_, key), pending in touched:
            try:
                after = pending.state.incident
                if pending.changed:
                    with worker.acting_for(pending.event):
                        states[key] = pending.state.model_dump_json().encode()
                    if after is not None and after != pending.before:
                        await publish(pending.before, after, republish=False)
                if pending.redelivered and after is not None:
                    await publish(None, after, republish=True)
            except Exception as error:  # noqa: BLE001  # as for a record (Worker._run): dead-lettered, never lost
                log.exception("unexpected error saving or publishing %s", key.decode(errors="replace"))
                for record in pending.records:
                    await worker.dead_letter(record, "error", f"{type(error).__name__}: {error}")

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
        """Runs for every alert event: folds it into its aggregate; each aggregate the batch changed
        is saved and published once the batch is done."""
        await worker.consume(stream, fold_one, finish, begin=batch.clear)
