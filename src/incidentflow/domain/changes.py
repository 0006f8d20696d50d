"""A change: the join of its events.

A `Change` is a join-semilattice: `join` is commutative, associative and idempotent, so a change
is a function of the *set* of its events (any order, any duplicates) and two snapshots of the same
change combine into the newer one wherever they meet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import Field

from incidentflow.domain.base import UNKNOWN, Value, env_of
from incidentflow.domain.events import ChangeEvent, Instant
from incidentflow.domain.history import Deployment

CHANGED = ("processing", "done")
"""Statuses that give a change its change time (the first of them)."""


class Stamped(Value):
    """A value with the event-order key of the event that set it: the later one wins a join."""

    at: Instant
    event_id: str
    value: str


def _later(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None or b is None:
        return a or b
    return a if (a.at, a.event_id, a.value) >= (b.at, b.event_id, b.value) else b


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


class Change(Value):
    """A change as of the events seen: status history folded into what correlation needs."""

    change_id: str
    integration: str
    source: str
    status: Stamped = Field(description="Status of the latest event (by event time, then event id).")
    changed_at: Instant | None = Field(description="Change time: the first `processing` or `done`.")
    labels: dict[str, Stamped] = Field(description="Per label, the value of the latest event that carried it.")
    title: Stamped | None = None
    url: Stamped | None = None
    committed_at: Instant | None = Field(default=None, description="The earliest commit time any event gave.")
    kind: Stamped | None = Field(
        default=None, description="The kind of the latest event that is not a plain deployment."
    )
    version: Stamped | None = Field(default=None, description="The version of the latest event that named one.")

    @property
    def counted(self) -> bool:
        """A change counts (and may correlate) once it has a change time and is not canceled."""
        return self.changed_at is not None and self.status.value in CHANGED

    @property
    def flat_labels(self) -> dict[str, str]:
        return {key: stamped.value for key, stamped in self.labels.items()}

    @property
    def service(self) -> str:
        return self.flat_labels.get("service") or UNKNOWN

    @property
    def env(self) -> str:
        return env_of(self.flat_labels)

    @property
    def deployment(self) -> Deployment | None:
        """What the deployment history of its service and env needs of it; None while it does not count."""
        if not self.counted or self.changed_at is None:
            return None
        kind = self.kind.value if self.kind is not None else "deployment"
        return Deployment(change_id=self.change_id, changed_at=self.changed_at, kind=kind,
                          version=self.version.value if self.version is not None else None)  # fmt: skip


def change_of(event: ChangeEvent) -> Change:
    """The change as one event tells it."""

    def stamp(value: str | None) -> Stamped | None:
        return None if value is None else Stamped(at=event.occurred_at, event_id=event.event_id, value=value)

    return Change(
        change_id=event.change_id,
        integration=event.integration,
        source=event.source,
        status=Stamped(at=event.occurred_at, event_id=event.event_id, value=event.status),
        changed_at=event.occurred_at if event.status in CHANGED else None,
        labels={
            key: Stamped(at=event.occurred_at, event_id=event.event_id, value=value)
            for key, value in event.labels.items()
        },  # fmt: skip
        title=stamp(event.title),
        url=stamp(event.url),
        committed_at=event.committed_at,
        kind=stamp(event.kind) if event.kind != "deployment" else None,
        version=stamp(event.version),
    )


def join(a: Change | None, b: Change) -> Change:
    """Both snapshots of one change combined: what all their events together say."""
    if a is None:
        return b
    labels = dict(a.labels)
    for key, stamped in b.labels.items():
        labels[key] = _later(labels.get(key), stamped) or stamped
    return a.model_copy(
        update={
            "status": _later(a.status, b.status),
            "changed_at": _earlier(a.changed_at, b.changed_at),
            "labels": dict(sorted(labels.items())),
            "title": _later(a.title, b.title),
            "url": _later(a.url, b.url),
            "committed_at": _earlier(a.committed_at, b.committed_at),
            "kind": _later(a.kind, b.kind),
            "version": _later(a.version, b.version),
        }
    )


def fold_changes(events: Iterable[ChangeEvent]) -> Change | None:
    change = None
    for event in events:
        change = join(change, change_of(event))
    return change
