"""Metric math: what each incident contributes to its (service, severity) series, and the sums.

A series keeps one `Member` per incident, replaced whole by newer versions, so applying a
contribution is idempotent and a reopen, a late event or a severity change retracts the old
contribution exactly. Daily buckets and trailing windows are sums over members, which is why
they equal a batch recomputation over the final incidents.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain.events import UtcDatetime
from incidentflow.domain.incident import Incident

UNKNOWN = "unknown"
WINDOWS: dict[str, timedelta] = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def series_key(service: str, severity: str) -> str:
    return f"{service}|{severity}"


def series_of(incident: Incident) -> tuple[str, str]:
    """(service, peak severity) of an incident; `unknown` stands in for either when absent."""
    return incident.labels.get("service") or UNKNOWN, incident.severity or UNKNOWN


class Contribution(BaseModel):
    """One incident's part in one series as of `version`; `present=False` withdraws it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    severity: str
    aggregate_id: str
    version: int
    present: bool
    status: Literal["open", "resolved"] | None = None
    resolved_at: UtcDatetime | None = None
    time_to_restore_seconds: float | None = None

    @property
    def series(self) -> str:
        return series_key(self.service, self.severity)


def contributions(before: Incident | None, after: Incident) -> list[Contribution]:
    """Runs after every change of an incident: its contribution now, and a withdrawal if it moved series."""
    service, severity = series_of(after)
    result = [
        Contribution(
            service=service,
            severity=severity,
            aggregate_id=after.aggregate_id,
            version=after.version,
            present=True,
            status=after.status,
            resolved_at=after.resolved_at,
            time_to_restore_seconds=after.time_to_restore_seconds,
        )
    ]
    if before is not None and series_of(before) != (service, severity):
        old_service, old_severity = series_of(before)
        result.append(
            Contribution(
                service=old_service,
                severity=old_severity,
                aggregate_id=after.aggregate_id,
                version=after.version,
                present=False,
            )
        )
    return result


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    present: bool
    status: Literal["open", "resolved"] | None = None
    resolved_at: UtcDatetime | None = None
    time_to_restore_seconds: float | None = None

    @property
    def restored(self) -> bool:
        return self.present and self.status == "resolved" and self.resolved_at is not None


class SeriesState(BaseModel):
    """The members of one (service, severity) series, stored in the worker's metric table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    severity: str
    members: dict[str, Member] = Field(default_factory=dict)


class Bucket(BaseModel):
    """Additive figures of one day of one series: sums over workers and days stay exact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = 0
    sum_seconds: float = 0.0
    max_seconds: float = 0.0


def record(state: SeriesState, contribution: Contribution) -> tuple[SeriesState, set[date]]:
    """Apply a contribution; returns the new state and the resolution days whose bucket changed."""
    old = state.members.get(contribution.aggregate_id)
    if old is not None and old.version > contribution.version:
        return state, set()
    new = Member(
        version=contribution.version,
        present=contribution.present,
        status=contribution.status,
        resolved_at=contribution.resolved_at,
        time_to_restore_seconds=contribution.time_to_restore_seconds,
    )
    if old == new:
        return state, set()
    days = {m.resolved_at.date() for m in (old, new) if m is not None and m.restored and m.resolved_at}
    members = {**state.members, contribution.aggregate_id: new}
    return state.model_copy(update={"members": members}), days


def _restored(state: SeriesState) -> list[tuple[datetime, float]]:
    return [
        (m.resolved_at, m.time_to_restore_seconds or 0.0)
        for m in state.members.values()
        if m.restored and m.resolved_at is not None
    ]


def bucket(state: SeriesState, day: date) -> Bucket:
    """The day's figures: incidents whose final resolution fell on that UTC day."""
    seconds = [s for at, s in _restored(state) if at.date() == day]
    return Bucket(count=len(seconds), sum_seconds=sum(seconds), max_seconds=max(seconds, default=0.0))


def mttr(state: SeriesState, now: datetime, window: timedelta) -> tuple[int, float | None]:
    """(incidents, mean time to restore) of incidents finally resolved in (now - window, now]."""
    seconds = [s for at, s in _restored(state) if now - window < at <= now]
    return len(seconds), (sum(seconds) / len(seconds) if seconds else None)


def open_count(state: SeriesState) -> int:
    return sum(1 for m in state.members.values() if m.present and m.status == "open")
