"""The incident fold: canonical alerts -> aggregate state table -> `incidentflow.incidents`.

Each batch is folded aggregate by aggregate: an aggregate's state is read once, every event of the
batch applied to it in turn, and the state saved and the change published once, from the incident
before the batch to the incident after it. An alert storm (a flapping check, a monitor retrying)
then costs one write and one incident record per batch, not one per event, and everything
downstream (metric contributions, correlation sides) follows the same count. Consumers of
`incidentflow.incidents` see the latest version of each batch; every version is a whole record.

Past the state horizon (runtime/horizon.py) a resolved aggregate is closed: its state is replaced
by a marker that turns every later event away as `too_late`, and the series, scope and suspects
stages are told to forget it (`close`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date

from pydantic import ValidationError

from incidentflow.domain import aggregate
from incidentflow.domain import contributions as contrib
from incidentflow.domain import correlation as corr
from incidentflow.domain import history as hist
from incidentflow.domain.base import from_json, json_of
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import Incident
from incidentflow.domain.series import closing_incident
from incidentflow.runtime.horizon import Horizon
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, Table, TooLate, Where, rekeyed
from incidentflow.stream.sides import Correlating, send_sides
from incidentflow.topics import Topics

log = logging.getLogger("incidentflow.worker")

TABLES = {"aggregates": "AggregateState JSON by aggregate_id; the state horizon's clock and due days"}
STATES_KEPT = 1024
"""Most aggregate states a fold keeps read between batches (`Fold.kept`): each its stored JSON and current fold."""
HISTORY_INPUT_BYTES = 256 * 1024
"""Records to a deployment history carry a batch's incidents up to this size (well under Kafka's 1 MB)."""
CLOSED = aggregate.CLOSED.model_dump_json(exclude_defaults=True).encode()


@dataclass
class Pending:
    """One aggregate touched by the batch being handled: its state as the batch leaves it."""

    state: aggregate.Stored
    before: Incident | None
    """The incident as it was before the batch."""
    where: Where
    """Where the aggregate lives (the partition of its records)."""
    since: date | None = None
    """The day its state horizon counted from before the batch (`AggregateState.since`)."""
    records: list[Record] = field(default_factory=list)
    changed: bool = False
    redelivered: bool = False


@dataclass
class Fold:
    """Runs for every alert event: folds it into its aggregate; each aggregate the batch changed is
    saved and published once the batch is done."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    limits: aggregate.Limits
    correlating: Correlating
    horizon_days: int = 90
    name: str = "fold"
    topics: tuple[str, ...] = ()
    batch: dict[tuple[int, bytes], Pending] = field(default_factory=dict)
    """The aggregates of the batch being handled: each read and parsed once, written and published
    once when the batch is done (`finish`), however many of its events the batch holds."""
    kept: OrderedDict[tuple[int, bytes], aggregate.Stored] = field(default_factory=OrderedDict)
    """The states last saved, parsed, the most recent last: an aggregate that keeps receiving
    events (a flapping check, a storm) is read and parsed once, not once per batch. Only while the
    consumer generation stays the one they were saved in (`kept_in`): then no other worker or
    stage writes their partitions."""
    kept_in: int | None = None
    clocks: dict[int, tuple[Where, date | None, date | None]] = field(default_factory=dict)
    """Per partition of the batch: where it is, its clock before the batch, the latest event day since."""
    windows: dict[tuple[str, bool], dict[str, hist.Window]] = field(default_factory=dict)
    """The batch's incidents for the deployment history, per history (`service|env`) and whether they
    belong to it or left it: sent together when the batch is done (`send_windows`)."""

    def __post_init__(self) -> None:
        self.topics = (self.names.alerts,)
        self.states = self.tables["aggregates"]
        self.horizon = Horizon(self.states, self.horizon_days)

    async def handle(self, message: Record) -> str:
        try:
            alert = from_json(AlertEvent, message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a canonical alert event: {error}") from None
        key = alert.aggregate_id.encode()
        if await rekeyed(self.context, message, alert.aggregate_id):
            return "rekeyed"
        pending = self.batch.get((message.partition, key))
        if pending is None:
            state = self.kept.get((message.partition, key))
            if state is None:
                stored = self.states.get(key)
                state = aggregate.Stored.load(stored)
            pending = Pending(state=state, before=state.incident, where=self.context.here(), since=state.since)
            self.batch[(message.partition, key)] = pending
        day = alert.occurred_at.date()
        where, clock, latest = self.clocks.get(message.partition) or self.clock_here()
        if self.horizon.too_old(day, clock) or self.horizon.past(pending.state.since, day):
            raise TooLate  # beyond the state horizon: of a closed aggregate, or one that would be by then
        state, outcome = pending.state.apply(alert, self.limits)
        if outcome == "too_late":  # closed, or older than its compacted history (docs/semantics.md)
            raise TooLate
        if latest is None or day > latest:
            self.clocks[message.partition] = (where, clock, day)
        pending.records.append(message)
        if outcome == "duplicate":
            # A redelivery: what the current state led to is published again, in case a crash lost
            # it after the state was saved. Every consumer takes the newest version, so this is harmless.
            pending.redelivered = True
            return "duplicate"
        pending.state, pending.changed = state, True
        return "applied"

    def clock_here(self) -> tuple[Where, date | None, date | None]:
        where, clock = self.context.here(), self.horizon.clock()
        self.clocks[where.partition] = (where, clock, clock)
        return where, clock, clock

    def begin(self) -> None:
        self.batch.clear()
        self.clocks.clear()
        self.windows.clear()
        if self.kept_in != self.context.generation:
            self.kept.clear()
            self.kept_in = self.context.generation

    async def finish(self) -> None:
        """Saves each aggregate the batch changed and publishes the change from before the batch to
        after it (one incident record, its contributions and correlation sides), or republishes the
        current incident of one it saw redelivered."""
        touched = list(self.batch.items())
        self.batch.clear()
        for where, pending in touched:
            key = where[1]
            self.kept.pop(where, None)
            try:
                after = pending.state.incident
                if pending.changed:
                    with self.context.acting_for(pending.where):
                        self.states.set(key, pending.state.dump())
                        self.horizon.file(key.decode(), pending.since, pending.state.since)
                    if after is not None and after != pending.before:
                        await self.publish(pending.before, after, pending.state.incident_json(), republish=False)
                if pending.redelivered and after is not None:
                    await self.publish(None, after, pending.state.incident_json(), republish=True)
                self.keep(where, pending.state)
            except Exception as error:  # noqa: BLE001  # as for a record (Runtime._run): dead-lettered, never lost
                log.exception("unexpected error saving or publishing %s", key.decode(errors="replace"))
                for record in pending.records:
                    await self.context.dead_letter(record, "error", f"{type(error).__name__}: {error}")
        await self.send_windows()
        await self.close_due()

    async def close_due(self) -> None:
        """Closes, in each partition whose clock the batch moved on, every aggregate now past its horizon."""
        clocks = list(self.clocks.items())
        self.clocks.clear()
        for partition, (where, clock, latest) in clocks:
            if latest is None or latest == clock:
                continue
            try:
                with self.context.acting_for(where):
                    for day, aggregate_id in self.horizon.due(latest):
                        await self.close(partition, aggregate_id, day)
                    self.horizon.set_clock(latest)  # last: a batch handled again closes what it had not
            except Exception:  # noqa: BLE001  # the clock stays: the next batch of the partition tries again
                log.exception("unexpected error closing aggregates past the state horizon in partition %d", partition)

    async def close(self, partition: int, aggregate_id: str, day: date) -> None:
        """Replaces the aggregate's state with the closed marker, and has every stage that keeps
        something of it forget it (its figures stay)."""
        key = aggregate_id.encode()
        self.kept.pop((partition, key), None)
        stored = self.states.get(key)
        state = aggregate.Stored.load(stored) if stored else None
        if state is not None and state.since == day:
            self.states.set(key, CLOSED)
            incident = state.incident
            if incident is not None:
                for closed in closing_incident(incident):
                    await self.context.send(self.names.contributions, closed.series, json_of(closed))
                lookback, lookahead = self.correlating.window(incident.integration)
                side = corr.incident_side(incident, lookback, lookahead)
                message = json_of(corr.Side(incident=side, member=False, closed=True))
                await self.context.send(self.names.suspects, aggregate_id, message)
                for bucket in self.correlating.rules.buckets(incident.labels):
                    await self.context.send(self.names.scope, bucket, message)
        self.horizon.file(aggregate_id, day, None)

    def keep(self, where: tuple[int, bytes], state: aggregate.Stored) -> None:
        self.kept[where] = state
        if len(self.kept) > STATES_KEPT:
            self.kept.popitem(last=False)

    def add_window(self, before: Incident | None, after: Incident) -> None:
        """The incident's episodes for the deployment history of its service and env (deployments made
        while it was open are rework), and a leave for the one it moved from."""
        series = hist.history_of(after)
        old_series = hist.history_of(before) if before is not None else None
        if before is not None and old_series == series and before.episodes == after.episodes:
            return  # nothing the history reads moved
        window = hist.window_of(after)
        if old_series is not None and old_series != series:
            self.windows.setdefault((old_series, False), {})[window.aggregate_id] = window
        self.windows.setdefault((series, True), {})[window.aggregate_id] = window

    async def send_windows(self) -> None:
        """The batch's incidents to each deployment history: one record per history, split in halves
        while it is larger than `HISTORY_INPUT_BYTES`."""
        gathered = list(self.windows.items())
        self.windows.clear()
        for (series, member), by_aggregate in gathered:
            parts = [tuple(by_aggregate.values())]
            while parts:
                windows = parts.pop()
                data = json_of(hist.HistoryInput(incidents=windows, member=member))
                if len(data) > HISTORY_INPUT_BYTES and len(windows) > 1:
                    half = len(windows) // 2
                    parts += [windows[half:], windows[:half]]  # the first half is sent first
                    continue
                await self.context.send(self.names.history, series, data)

    async def publish(self, before: Incident | None, after: Incident, record: bytes, republish: bool) -> None:
        """Publishes `after` (`record`: its JSON), its contributions and its correlation sides."""
        names, rules = self.names, self.correlating.rules
        await self.context.send(names.incidents, after.aggregate_id, record)
        for contribution in contrib.contributions(None if republish else before, after):
            await self.context.send(names.contributions, contribution.series, json_of(contribution))
        self.add_window(None if republish else before, after)
        if not rules.buckets(after.labels) and (before is None or not rules.buckets(before.labels)):
            return  # no scope label: it can never correlate
        lookback, lookahead = self.correlating.window(after.integration)
        view_moved, resolution = corr.side_moved(before, after) if before is not None else (True, False)
        moved = republish or view_moved  # resolution: suspects tell changes of a resolution
        if not (moved or resolution):
            return
        side = corr.incident_side(after, lookback, lookahead)
        message = corr.Side(incident=side)
        data = json_of(message)
        await self.context.send(names.suspects, after.aggregate_id, data)
        if moved:
            await send_sides(self.context, names, rules, before.labels if before else {}, after.labels, message, data)
