"""Metric math: what each incident contributes to its (service, severity) series, and the sums.

A series keeps one `Member` per incident, replaced whole by newer versions, so applying a
contribution is idempotent and a reopen, a late event or a severity change retracts the old
contribution exactly. Resolutions are filed one per key under their series and UTC day, beside
that day's running `DayFigures`, and the `SeriesIndex` counts open incidents: each contribution
touches one member, at most two resolutions and days, and the index, whatever the size of the
series or the day. Daily figures and trailing windows are sums over days, which is why they equal
a batch recomputation over the final incidents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from incidentflow.domain.events import UtcDatetime
from incidentflow.domain.incident import Incident

UNKNOWN = "unknown"
WINDOWS: dict[str, timedelta] = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def series_key(service: str, severity: str) -> str:
    return f"{service}|{severity}"


def series_of(incident: Incident) -> tuple[str, str]:
    """(service, peak severity) of an incident; `unknown` stands in for either when absent."""
    return incident.labels.get("service") or UNKNOWN, incident.severity or UNKNOWN


def _position(value: object) -> object:
    """A position as stored; figures and indexes stored before positions named their last change
    (`"partition@offset"`) or none: they are taken to be before every position."""
    return -1 if value is None or isinstance(value, str) else value


Position = Annotated[int, BeforeValidator(_position)]
"""Where a change came among all changes of its series (`Record.position` in stream/packed.py)."""


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


def _view(incident: Incident) -> tuple[object, ...]:
    return (*series_of(incident), incident.status, incident.resolved_at, incident.time_to_restore_seconds)


def contributions(before: Incident | None, after: Incident) -> list[Contribution]:
    """Runs after every change of an incident: its contribution now, and a withdrawal if it moved series.

    A change that leaves the metric view as it was (a heartbeat, a new title) contributes nothing.
    """
    if before is not None and _view(before) == _view(after):
        return []
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
    """Where one incident stands in one series, as of `version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    present: bool
    status: Literal["open", "resolved"] | None = None
    resolved_at: UtcDatetime | None = None
    time_to_restore_seconds: float | None = None

    @property
    def restored(self) -> bool:
        return self.present and self.status == "resolved" and self.resolved_at is not None

    @property
    def open(self) -> bool:
        return self.present and self.status == "open"

    def entry(self) -> tuple[date, Resolution] | None:
        """(day, resolution) the member files in its series when it is restored: its final resolution."""
        if not self.restored or self.resolved_at is None:
            return None
        return self.resolved_at.date(), Resolution(resolved_at=self.resolved_at,
                                                   seconds=self.time_to_restore_seconds or 0.0)  # fmt: skip


class Resolution(BaseModel):
    """One incident finally resolved on a day of a series (kept under its own key, beside the day's figures)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolved_at: UtcDatetime
    seconds: float


class DayFigures(BaseModel):
    """The incidents of one series finally resolved on one UTC day: their count, sum and maximum.

    The resolutions themselves are kept one per key beside it (a value listing them all was
    rewritten whole on every resolution: the fold benchmark's largest cost). The figures are kept
    as running sums, each change applied once (`applied`, see `Days` in stream/series.py); a
    maximum that leaves is found again from the resolutions. The sum is kept in whole microseconds,
    the unit of the event times, so it is exact in any order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = 0
    sum_microseconds: int = 0
    max_seconds: float = 0.0
    applied: Position = -1
    """Position of the last change these figures took in: every change at or before it is in them
    (see `Days` in stream/series.py)."""

    def entered(self, resolution: Resolution) -> DayFigures:
        seconds = resolution.seconds
        return DayFigures(count=self.count + 1, sum_microseconds=self.sum_microseconds + microseconds(seconds),
                          max_seconds=max(self.max_seconds, seconds))  # fmt: skip

    def left(self, resolution: Resolution) -> DayFigures:
        """The figures without this resolution, its longest kept (`loses_max` tells when that may be it)."""
        if self.count <= 1:
            return DayFigures()
        return DayFigures(count=self.count - 1, sum_microseconds=self.sum_microseconds - microseconds(resolution.seconds),
                          max_seconds=self.max_seconds)  # fmt: skip

    def loses_max(self, resolution: Resolution) -> bool:
        """Whether the longest may leave with this resolution: the day's resolutions then tell the next."""
        return self.count > 1 and resolution.seconds >= self.max_seconds

    def with_max(self, resolutions: Iterable[Resolution]) -> DayFigures:
        """The figures with the longest of these resolutions (the day's, read back) as their longest."""
        return self.model_copy(update={"max_seconds": max((r.seconds for r in resolutions), default=0.0)})

    def figures(self) -> Bucket:
        """The day's additive figures (what `incidentflow.metrics` carries)."""
        return Bucket(count=self.count, sum_seconds=self.sum_microseconds / 1e6, max_seconds=self.max_seconds)


F = TypeVar("F")
E = TypeVar("E")


@dataclass(frozen=True)
class Day(Generic[F, E]):
    """One day of a series as a scrape reads it: its figures, and its entries (each resolution or
    change) for a window that cuts through it."""

    on: date
    figures: F
    entries: Callable[[], Iterable[E]]

    def inside(self, start: datetime, end: datetime) -> bool:
        """Whether the whole day lies in the window (start, end]."""
        begin = datetime.combine(self.on, time(), tzinfo=UTC)
        return start < begin and begin + timedelta(days=1) <= end


def microseconds(seconds: float) -> int:
    return round(seconds * 1_000_000)


class SeriesIndex(BaseModel):
    """What a scrape needs first about a series: its open incidents and the days that have resolutions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    severity: str
    open: int = 0
    days: tuple[date, ...] = ()
    applied: Position = -1
    """Position of the last change this index took in: the open count is a running sum, each change
    applied once, and every change at or before that position is in it."""


class Bucket(BaseModel):
    """Additive figures of one day of one series: sums over workers and days stay exact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = 0
    sum_seconds: float = 0.0
    max_seconds: float = 0.0


@dataclass(frozen=True)
class Move:
    """What one contribution changes in its series: the member, the open count, and at most two day buckets."""

    member: Member
    open_delta: int
    leave_day: date | None
    enter_day: date | None


def move(old: Member | None, contribution: Contribution) -> Move | None:
    """Runs for every contribution; None when it is stale (an older version) or changes nothing."""
    if old is not None and old.version > contribution.version:
        return None
    new = Member(
        version=contribution.version,
        present=contribution.present,
        status=contribution.status,
        resolved_at=contribution.resolved_at,
        time_to_restore_seconds=contribution.time_to_restore_seconds,
    )
    if old == new:
        return None
    return Move(
        member=new,
        open_delta=int(new.open) - int(old is not None and old.open),
        leave_day=old.resolved_at.date() if old is not None and old.restored and old.resolved_at else None,
        enter_day=new.resolved_at.date() if new.restored and new.resolved_at else None,
    )


def with_day(index: SeriesIndex, day: date | None, open_delta: int, position: int) -> SeriesIndex:
    """The index with the change at `position` applied; an index that took it in already (its own
    position is that one or later: changes of a series come in order) is returned as is."""
    if index.applied >= position:
        return index
    days = index.days if day is None or day in index.days else tuple(sorted((*index.days, day)))
    return index.model_copy(update={"open": index.open + open_delta, "days": days, "applied": position})


def window_days(now: datetime, window: timedelta) -> list[date]:
    """The UTC days a trailing window touches."""
    first, last = (now - window).date(), now.date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def mttr(days: Iterable[Day[DayFigures, Resolution]], now: datetime, window: timedelta) -> tuple[int, float | None]:
    """(incidents, mean time to restore) of incidents finally resolved in (now - window, now].

    A day wholly inside the window counts by its figures; only the days the window's ends cut
    through are read resolution by resolution.
    """
    start = now - window
    count = total = 0
    for day in days:
        if day.inside(start, now):
            count, total = count + day.figures.count, total + day.figures.sum_microseconds
            continue
        for resolution in day.entries():
            if start < resolution.resolved_at <= now:
                count, total = count + 1, total + microseconds(resolution.seconds)
    return count, (total / 1e6 / count if count else None)


class ChangeMember(BaseModel):
    """Where one change stands in one service's change series (derived from the joined facts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    present: bool
    changed_at: UtcDatetime | None = None
    failed: bool = False

    @property
    def day(self) -> date | None:
        return self.changed_at.date() if self.present and self.changed_at is not None else None

    def entry(self) -> tuple[date, ChangeEntry] | None:
        """(day, entry) the change files in the service's series when it counts there."""
        if not self.present or self.changed_at is None:
            return None
        return self.changed_at.date(), ChangeEntry(changed_at=self.changed_at, failed=self.failed)


class ChangeEntry(BaseModel):
    """One change filed on a day of a service's change series (under its own key, beside the day's figures)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    changed_at: UtcDatetime
    failed: bool


class ChangeDayFigures(BaseModel):
    """The changes of one service whose change time fell on one UTC day, as counts (each
    change is kept under its own key beside them, as resolutions are), each change applied once
    (`applied`, see `Days` in stream/series.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    changes: int = 0
    failed: int = 0
    applied: Position = -1
    """Position of the last change these figures took in: every change at or before it is in them
    (see `Days` in stream/series.py)."""

    def entered(self, entry: ChangeEntry) -> ChangeDayFigures:
        return ChangeDayFigures(changes=self.changes + 1, failed=self.failed + int(entry.failed))

    def left(self, entry: ChangeEntry) -> ChangeDayFigures:
        return ChangeDayFigures(changes=self.changes - 1, failed=self.failed - int(entry.failed))

    def loses_max(self, entry: ChangeEntry) -> bool:
        return False  # counts only: nothing is ever read back

    def with_max(self, entries: Iterable[ChangeEntry]) -> ChangeDayFigures:
        return self

    def figures(self) -> tuple[int, int]:
        """(changes, failed changes) of the day."""
        return self.changes, self.failed


class ChangeIndex(BaseModel):
    """The days of a service's change series that hold changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    days: tuple[date, ...] = ()

    def with_day(self, day: date | None) -> ChangeIndex:
        if day is None or day in self.days:
            return self
        return self.model_copy(update={"days": tuple(sorted((*self.days, day)))})


def change_failure(
    days: Iterable[Day[ChangeDayFigures, ChangeEntry]], now: datetime, window: timedelta
) -> tuple[int, int]:
    """(changes, failed changes) with their change time in (now - window, now]."""
    start = now - window
    changes = failed = 0
    for day in days:
        if day.inside(start, now):
            changes, failed = changes + day.figures.changes, failed + day.figures.failed
            continue
        for entry in day.entries():
            if start < entry.changed_at <= now:
                changes, failed = changes + 1, failed + int(entry.failed)
    return changes, failed


class ServiceReport(BaseModel):
    """What `incidentflow report` prints for one service over a range of days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    incidents: int = Field(description="Incidents finally resolved in the range.")
    mttr_seconds: float | None = Field(description="Mean time to restore of those incidents.")
    max_seconds: float | None = Field(description="Longest time to restore among them.")
    changes: int
    failed_changes: int
    change_failure_rate: float | None


def report(rows: Iterable[tuple[str, str, date, int, float, float, int, int]], first: date, last: date,
           service: str | None = None) -> list[ServiceReport]:  # fmt: skip
    """Sums daily rows (metric, service, day, count, sum_seconds, max_seconds, changes, failed) per service
    for days in [first, last]; the rows of `incidentflow.metrics` are additive, so this is exact."""
    sums: dict[str, list[float]] = {}
    for metric, row_service, day, count, total, longest, changes, failed in rows:
        if not first <= day <= last or (service is not None and row_service != service):
            continue
        acc = sums.setdefault(row_service, [0, 0.0, 0.0, 0, 0])
        if metric == "mttr":
            acc[0] += count
            acc[1] += total
            acc[2] = max(acc[2], longest) if count else acc[2]
        else:
            acc[3] += changes
            acc[4] += failed
    return [
        ServiceReport(
            service=name,
            incidents=int(acc[0]),
            mttr_seconds=acc[1] / acc[0] if acc[0] else None,
            max_seconds=acc[2] if acc[0] else None,
            changes=int(acc[3]),
            failed_changes=int(acc[4]),
            change_failure_rate=acc[4] / acc[3] if acc[3] else None,
        )
        for name, acc in sorted(sums.items())
        if acc[0] or acc[3]
    ]
