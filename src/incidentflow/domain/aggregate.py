"""The stored state of one aggregate: a bounded event log, a snapshot, and the current fold.

`apply` is what the worker calls for every alert event. It keeps the fold a function of the
*set* of events: a duplicate changes nothing, a late event is inserted in order and the fold is
recomputed from the snapshot. State stays bounded: past `Limits.max_events` retained events the
oldest half is folded into the snapshot, whose horizon then rejects events older than it (they
are dead-lettered as `too_late`, never applied silently out of order). Past the state horizon
an aggregate is closed (`CLOSED`): it keeps no history, and every later event is `too_late`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import Fold, Incident, delivery_preference, evolve, fold_events

Outcome = Literal["applied", "duplicate", "too_late"]


@dataclass(frozen=True)
class Limits:
    """How much history one aggregate keeps (see docs/semantics.md, "Bounded state")."""

    max_events: int = 256
    max_compacted_ids: int = 4096


DEFAULT_LIMITS = Limits()


class AggregateState(BaseModel):
    """Everything the worker stores for one aggregate between events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[AlertEvent, ...] = ()
    """Retained events, sorted by `order_key`, one per event id."""
    snapshot: Fold = Fold()
    """The fold of every compacted event (all of them older than `horizon`)."""
    horizon: tuple[datetime, str] | None = None
    compacted_ids: tuple[str, ...] = ()
    current: Fold = Fold()
    """`snapshot` folded with `events`: kept so that in-order events apply in O(1)."""
    closed: bool = False
    """Past the state horizon: nothing else is kept, and no event applies any more."""

    @property
    def incident(self) -> Incident | None:
        return self.current.incident

    @property
    def since(self) -> date | None:
        """The day the aggregate's state horizon counts from: its final resolution, or for resolves
        still waiting for an open, the latest of them; None while open (it may still change) or closed."""
        incident = self.incident
        if self.closed:
            return None
        if incident is None:
            return self.events[-1].occurred_at.date() if self.events else None  # sorted by event time
        return incident.resolved_at.date() if incident.status == "resolved" and incident.resolved_at else None


CLOSED = AggregateState(closed=True)
"""What the state of an aggregate past its horizon is replaced with."""


@dataclass(frozen=True)
class Applied:
    """What `apply` did: the new state, and the incident before and after."""

    state: AggregateState
    outcome: Outcome
    before: Incident | None
    after: Incident | None

    @property
    def changed(self) -> bool:
        return self.outcome == "applied" and self.after is not None and self.after != self.before


def apply(state: AggregateState, event: AlertEvent, limits: Limits = DEFAULT_LIMITS) -> Applied:
    """Add one event to an aggregate; runs once per delivery, duplicates included."""
    before = state.incident
    if state.closed:
        return Applied(state, "too_late", before, before)
    ids = [e.event_id for e in state.events]
    if event.event_id in ids:
        kept = state.events[ids.index(event.event_id)]
        too_old = state.horizon is not None and event.order_key <= state.horizon
        if too_old or delivery_preference(event) >= delivery_preference(kept):
            return Applied(state, "duplicate", before, before)
        events = tuple(e for e in state.events if e.event_id != event.event_id)
        return _with_events(state, _insert(events, event), limits, before)
    if state.horizon is not None and event.order_key <= state.horizon:
        outcome: Outcome = "duplicate" if event.event_id in state.compacted_ids else "too_late"
        return Applied(state, outcome, before, before)
    if not state.events or event.order_key > state.events[-1].order_key:
        current = evolve(state.current, event)
        grown = state.model_copy(update={"events": (*state.events, event), "current": current})
        return _bounded(grown, limits, before)
    return _with_events(state, _insert(state.events, event), limits, before)


def _insert(events: tuple[AlertEvent, ...], event: AlertEvent) -> tuple[AlertEvent, ...]:
    keys = [e.order_key for e in events]
    at = bisect.bisect(keys, event.order_key)
    return (*events[:at], event, *events[at:])


def _with_events(
    state: AggregateState, events: tuple[AlertEvent, ...], limits: Limits, before: Incident | None
) -> Applied:
    current = fold_events(events, state.snapshot)
    return _bounded(state.model_copy(update={"events": events, "current": current}), limits, before)


def _bounded(state: AggregateState, limits: Limits, before: Incident | None) -> Applied:
    if len(state.events) > limits.max_events:
        keep = limits.max_events // 2
        old, recent = state.events[:-keep], state.events[-keep:]
        ids = (*state.compacted_ids, *(e.event_id for e in old))[-limits.max_compacted_ids :]
        state = state.model_copy(
            update={
                "events": recent,
                "snapshot": fold_events(old, state.snapshot),
                "horizon": old[-1].order_key,
                "compacted_ids": ids,
            }
        )
    return Applied(state, "applied", before, state.incident)
