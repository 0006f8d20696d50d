"""The incident aggregate: a pure fold of an aggregate's alert events, applied in event-time order.

The fold is total (every event of every action is handled) and returns new frozen values. It is
order-independent because `project` sorts the *set* of events by `AlertEvent.order_key` before
folding, so any arrival order and any number of duplicate deliveries give the same incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incidentflow.domain.events import AlertEvent, Instant, Labels, Severity, peak

MAX_EPISODES = 50
"""Episodes an incident lists; older ones are kept as a count and a sum (docs/semantics.md, "Bounded state")."""


class Episode(BaseModel):
    """One stretch of time the incident was open; `resolved_at` is None while it still is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opened_at: Instant
    resolved_at: Instant | None = None

    @property
    def seconds(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.opened_at).total_seconds()


class Incident(BaseModel):
    """The record of `incidentflow.incidents`: the state of one aggregate after all its events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate_id: str
    integration: str
    source: str
    external_aggregate_key: str
    status: Literal["open", "resolved"]
    severity: Severity | None = Field(description="Peak severity while open.")
    current_severity: Severity | None = Field(description="Severity of the latest event that carried one.")
    title: str | None
    description: str | None
    url: str | None
    labels: Labels
    opened_at: Instant = Field(description="When the first episode opened.")
    resolved_at: Instant | None = Field(description="Close of the last episode; null while open.")
    episodes: tuple[Episode, ...] = Field(description=f"The latest {MAX_EPISODES} episodes, oldest first.")
    earlier_episodes: int = Field(default=0, description="Episodes older than those listed (all closed).")
    earlier_episodes_seconds: float = Field(default=0.0, description="Time open of the episodes not listed.")
    reopen_count: int
    time_to_restore_seconds: float | None = Field(
        description="Sum of closed episodes, those not listed included; null while open."
    )
    last_event_at: Instant
    event_count: int = Field(description="Distinct events applied.")
    version: int = Field(description="Grows with every distinct event applied; newer states have larger versions.")


class Waiting(BaseModel):
    """Resolves seen before any open, reduced to what the first open takes from them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    labels: Labels
    title: str | None
    description: str | None
    url: str | None
    current_severity: Severity | None


class Fold(BaseModel):
    """The running state of the fold: the incident once opened, and what waits for an open.

    Resolves seen before any open (for example an Elven `resolved` whose webhook overtook its
    `alarmed`) wait in `pending`; the first open then closes at once at its own time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident: Incident | None = None
    pending: Waiting | None = None

    @field_validator("pending", mode="before")
    @classmethod
    def _from_stored_events(cls, value: object) -> object:
        """States stored before 0.2 kept the waiting resolves themselves: a list, read as their summary."""
        if not isinstance(value, list | tuple):
            return value
        waiting = None
        for item in value:
            waiting = _wait(waiting, AlertEvent.model_validate(item))
        return waiting


def _latest(values: Iterable[str | None]) -> str | None:
    found = None
    for value in values:
        if value is not None:
            found = value
    return found


def _merge_details(incident: Incident, event: AlertEvent) -> dict[str, object]:
    """Fields every applied event refreshes: latest non-null text, merged labels, counters."""
    return {
        "title": _latest((incident.title, event.title)),
        "description": _latest((incident.description, event.description)),
        "url": _latest((incident.url, event.url)),
        "labels": {**incident.labels, **event.labels},
        "current_severity": _latest((incident.current_severity, event.severity)),
        "source": event.source,
        "last_event_at": max(incident.last_event_at, event.occurred_at),
        "event_count": incident.event_count + 1,
        "version": incident.version + 1,
    }


def _wait(pending: Waiting | None, event: AlertEvent) -> Waiting:
    if pending is None:
        return Waiting(count=1, labels=event.labels, title=event.title, description=event.description,
                       url=event.url, current_severity=event.severity)  # fmt: skip
    return Waiting(
        count=pending.count + 1,
        labels={**pending.labels, **event.labels},
        title=_latest((pending.title, event.title)),
        description=_latest((pending.description, event.description)),
        url=_latest((pending.url, event.url)),
        current_severity=_latest((pending.current_severity, event.severity)),
    )


def _first_open(event: AlertEvent, pending: Waiting | None) -> Incident:
    seen = _wait(pending, event)
    closes_at = event.occurred_at if pending else None
    return Incident(
        aggregate_id=event.aggregate_id,
        integration=event.integration,
        source=event.source,
        external_aggregate_key=event.external_aggregate_key,
        status="resolved" if pending else "open",
        severity=event.severity,
        current_severity=seen.current_severity,
        title=seen.title,
        description=seen.description,
        url=seen.url,
        labels=seen.labels,
        opened_at=event.occurred_at,
        resolved_at=closes_at,
        episodes=(Episode(opened_at=event.occurred_at, resolved_at=closes_at),),
        reopen_count=0,
        time_to_restore_seconds=0.0 if pending else None,
        last_event_at=event.occurred_at,
        event_count=seen.count,
        version=seen.count,
    )


def _start_episode(incident: Incident, event: AlertEvent) -> Incident:
    episodes = (*incident.episodes, Episode(opened_at=event.occurred_at))
    earlier, earlier_seconds = incident.earlier_episodes, incident.earlier_episodes_seconds
    if len(episodes) > MAX_EPISODES:
        # The oldest is closed (only the last episode can be open); added one at a time, in order,
        # so the sum is the same float as summing every episode from the first.
        earlier, earlier_seconds = earlier + 1, earlier_seconds + (episodes[0].seconds or 0.0)
        episodes = episodes[1:]
    return incident.model_copy(
        update={
            **_merge_details(incident, event),
            "status": "open",
            "severity": peak(incident.severity, event.severity),
            "resolved_at": None,
            "episodes": episodes,
            "earlier_episodes": earlier,
            "earlier_episodes_seconds": earlier_seconds,
            "reopen_count": incident.reopen_count + 1,
            "time_to_restore_seconds": None,
        }
    )


def _close_episode(incident: Incident, event: AlertEvent) -> Incident:
    last = incident.episodes[-1]
    closed = Episode(opened_at=last.opened_at, resolved_at=event.occurred_at)
    episodes = (*incident.episodes[:-1], closed)
    return incident.model_copy(
        update={
            **_merge_details(incident, event),
            "status": "resolved",
            "resolved_at": event.occurred_at,
            "episodes": episodes,
            "time_to_restore_seconds": sum((e.seconds or 0.0 for e in episodes), incident.earlier_episodes_seconds),
        }
    )


def _refresh(incident: Incident, event: AlertEvent, *, raise_severity: bool) -> Incident:
    update = _merge_details(incident, event)
    if raise_severity:
        update["severity"] = peak(incident.severity, event.severity)
    return incident.model_copy(update=update)


def evolve(fold: Fold, event: AlertEvent) -> Fold:
    """Apply one event that is later (by `order_key`) than every event already folded.

    Lifecycle: the first open (or reopen, or heartbeat) starts an episode and a resolve closes
    it; a reopen, or an open after a close, starts a new episode. An open while open and a
    resolve while resolved move no episode time. A heartbeat only refreshes `last_event_at`.
    """
    incident = fold.incident
    if incident is None:
        if event.action == "resolve":
            return Fold(pending=_wait(fold.pending, event))
        return Fold(incident=_first_open(event, fold.pending))
    is_open = incident.status == "open"
    match event.action:
        case "open" | "reopen":
            new = _refresh(incident, event, raise_severity=True) if is_open else _start_episode(incident, event)
        case "resolve":
            new = _close_episode(incident, event) if is_open else _refresh(incident, event, raise_severity=False)
        case "heartbeat":
            new = _refresh(incident, event, raise_severity=False)
    return Fold(incident=new)


def fold_events(events: Iterable[AlertEvent], start: Fold | None = None) -> Fold:
    """Fold events (already sorted by `order_key`, without duplicates) onto `start`."""
    fold = start or Fold()
    for event in events:
        fold = evolve(fold, event)
    return fold


def dedupe(events: Iterable[AlertEvent]) -> list[AlertEvent]:
    """One event per `event_id`, sorted by `order_key`.

    Two deliveries that share an id but differ (an Elven retry named by its `webhook-id`, seen at
    two receive times) keep the earlier one, so the choice depends on the set, not the order.
    """
    chosen: dict[str, AlertEvent] = {}
    for event in events:
        kept = chosen.get(event.event_id)
        if kept is None or delivery_preference(event) < delivery_preference(kept):
            chosen[event.event_id] = event
    return sorted(chosen.values(), key=lambda e: e.order_key)


def delivery_preference(event: AlertEvent) -> tuple[datetime, datetime, str]:
    return (event.occurred_at, event.received_at, event.model_dump_json())


def project(events: Iterable[AlertEvent]) -> Incident | None:
    """The incident for a set of events of one aggregate; None until something opened it."""
    return fold_events(dedupe(events)).incident
