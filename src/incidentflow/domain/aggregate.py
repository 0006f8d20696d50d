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

import msgspec
from pydantic import BaseModel, ConfigDict

from incidentflow.domain.base import from_json, json_of
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
        last = self.events[-1].occurred_at.date() if self.events else None  # sorted by event time
        return _since(self.incident, self.closed, last)


def _since(incident: Incident | None, closed: bool, last_event_day: date | None) -> date | None:
    if closed:
        return None
    if incident is None:
        return last_event_day
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


class _Parts(msgspec.Struct, forbid_unknown_fields=True):
    """The stored JSON of an `AggregateState`, each field kept as the JSON it was read as."""

    events: msgspec.Raw = msgspec.Raw(b"[]")
    snapshot: msgspec.Raw = msgspec.Raw(b"null")
    horizon: msgspec.Raw = msgspec.Raw(b"null")
    compacted_ids: msgspec.Raw = msgspec.Raw(b"[]")
    current: msgspec.Raw = msgspec.Raw(b"null")
    closed: bool = False


class _Retained(msgspec.Struct):
    """What an event arriving after every retained one needs to know of each of them."""

    event_id: str
    occurred_at: datetime


_PARTS = msgspec.json.Decoder(_Parts)
_RETAINED = msgspec.json.Decoder(list[_Retained])
_HORIZON = msgspec.json.Decoder(tuple[datetime, str] | None)


class Stored:
    """An aggregate's state as the fold reads and writes it: the JSON of `AggregateState`, parsed
    only as far as the next event needs.

    Most events come after every event an aggregate retains. For them the fold needs the retained
    events' ids and the order of the last one, the horizon and the current fold, and the retained
    events stay the JSON they were read as: written back with the new one appended, in the layout
    `AggregateState` writes. Every other case (a redelivery of a retained event, an event out of
    order, one that makes the history compact) parses the whole state and applies it as `apply` does.
    """

    __slots__ = ("_current", "_events", "_ids", "_incident_json", "_last", "_parts", "_state")

    def __init__(self, state: AggregateState | None = None, parts: _Parts | None = None) -> None:
        self._state = state
        self._parts = parts
        self._events: list[bytes] = []
        """The retained events' JSON, without the array's brackets: what was read, then each event appended."""
        self._ids: set[str] = set()
        self._last: tuple[datetime, str] | None = None
        self._current: Fold | None = None
        self._incident_json: bytes | None = None
        if parts is not None:
            inner = bytes(parts.events).strip()[1:-1].strip()
            self._events = [inner] if inner else []
            retained = _RETAINED.decode(parts.events)
            self._ids = {e.event_id for e in retained}
            if len(self._ids) != len(retained):
                self._parts, self._state = None, self._parse(parts)  # not as `apply` keeps it: read whole
                return
            self._last = (retained[-1].occurred_at, retained[-1].event_id) if retained else None
            current = bytes(parts.current)
            self._current = from_json(Fold, current) if current != b"null" else Fold()

    @classmethod
    def load(cls, data: bytes | None) -> Stored:
        """The state stored as `data` (None: an aggregate with no state yet)."""
        return cls(parts=_PARTS.decode(data) if data else _Parts())

    @staticmethod
    def _parse(parts: _Parts) -> AggregateState:
        return from_json(AggregateState, _dump_parts(parts, [bytes(parts.events).strip()[1:-1]], None))

    @property
    def state(self) -> AggregateState:
        """The whole state (parsed on first use)."""
        if self._state is None:
            assert self._parts is not None  # noqa: S101  # one of the two is always set
            self._state = from_json(AggregateState, self.dump())
        return self._state

    @property
    def closed(self) -> bool:
        return self._parts.closed if self._state is None and self._parts is not None else self.state.closed

    @property
    def incident(self) -> Incident | None:
        return self._current.incident if self._state is None and self._current is not None else self.state.incident

    @property
    def since(self) -> date | None:
        """As `AggregateState.since`."""
        if self._state is not None or self._current is None:
            return self.state.since
        return _since(self._current.incident, self.closed, self._last[0].date() if self._last is not None else None)

    def incident_json(self) -> bytes:
        """The JSON of `incident` (`null` before any open), made once."""
        if self._incident_json is None:
            incident = self.incident
            self._incident_json = json_of(incident) if incident is not None else b"null"
        return self._incident_json

    def dump(self) -> bytes:
        """The state's JSON, as `AggregateState.model_dump_json` writes it."""
        if self._state is not None or self._parts is None or self._current is None:
            return json_of(self.state)
        pending = self._current.pending
        current = b"".join((b'{"incident":', self.incident_json(), b',"pending":',
                            json_of(pending) if pending is not None else b"null", b"}"))  # fmt: skip
        return _dump_parts(self._parts, self._events, current)

    def apply(self, event: AlertEvent, limits: Limits = DEFAULT_LIMITS) -> tuple[Stored, Outcome]:
        """As `apply`, on the stored state: the new state and the outcome."""
        parts, current, last = self._parts, self._current, self._last
        if self._state is not None or parts is None or current is None or parts.closed or event.event_id in self._ids:
            applied = apply(self.state, event, limits)
            return (self if applied.state is self.state else Stored(applied.state)), applied.outcome
        horizon = _HORIZON.decode(parts.horizon)
        if horizon is not None and event.order_key <= horizon:
            return self, ("duplicate" if event.event_id in self.state.compacted_ids else "too_late")
        if (last is not None and event.order_key <= last) or len(self._ids) + 1 > limits.max_events:
            applied = apply(self.state, event, limits)
            return Stored(applied.state), applied.outcome
        grown = Stored(parts=None)
        grown._parts, grown._current = parts, evolve(current, event)
        grown._events = [*self._events, json_of(event)]
        grown._ids, grown._last = {*self._ids, event.event_id}, event.order_key
        return grown, "applied"


def _dump_parts(parts: _Parts, events: list[bytes], current: bytes | None) -> bytes:
    return b"".join((
        b'{"events":[', b",".join(events), b'],"snapshot":', _fold_or_empty(parts.snapshot), b',"horizon":',
        bytes(parts.horizon), b',"compacted_ids":', bytes(parts.compacted_ids), b',"current":',
        current if current is not None else _fold_or_empty(parts.current),
        b',"closed":', b"true" if parts.closed else b"false", b"}",
    ))  # fmt: skip


_EMPTY_FOLD = json_of(Fold())


def _fold_or_empty(raw: msgspec.Raw) -> bytes:
    data = bytes(raw)
    return _EMPTY_FOLD if data == b"null" else data
