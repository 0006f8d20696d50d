"""The series every metric is kept in, and the sums over its days.

Every metric is a series per (metric, service, env, severity) of daily figures, fed by contributions
(`SeriesContribution`, domain/contributions.py): one item's part in one series (an incident's time
to restore, a change). A series keeps one member per item, replaced by a newer contribution, so
applying one is idempotent and a reopen, a late event or a severity change retracts the old part
exactly. Each item's entry is filed under its series and UTC day, beside that day's running
`DayFigures`, and the `SeriesIndex` counts open items: each contribution touches one member, at most
two entries and days, and the index, whatever the size of the series or the day. Daily figures and
trailing windows are sums over days, which is why they equal a batch recomputation over the final
items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain import sketch
from incidentflow.domain.events import Instant
from incidentflow.domain.records import MetricRow

WINDOWS: dict[str, timedelta] = {
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


Position = int
"""Where a change came among all changes of its series (`Record.position` in runtime/packed.py)."""


class Entry(BaseModel):
    """One item (an incident finally resolved, a change) filed on a day of its series, under its own key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: Instant
    """When it counts: the final resolution, the change time."""
    seconds: float | None = None
    """Its duration, for a metric of durations (time to restore)."""
    failed: bool = False
    """For a change: at least one live correlation, or rolled back."""
    rework: bool = False
    """For a change: a rollback, hotfix or revert, or deployed while an incident of its service and env was open."""
    rollback: bool = False
    """For a change: a rollback (by its kind, or by the version it deployed)."""


DayEntry = tuple[date, Entry]


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Step:
    """What one contribution changes in its series: the member stored for its item, the entry it
    leaves and the entry it enters (day and entry; either may be None), and the open count."""

    member: BaseModel
    leaving: DayEntry | None
    entering: DayEntry | None
    open_delta: int = 0


class SeriesContribution(Protocol):
    """One item's part in one series, as the series stage receives it: each metric is one of these
    (`IncidentContribution` here, `correlation.ChangeContribution`), with its own member."""

    metric: str
    service: str
    env: str

    @property
    def series(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def item(self) -> str: ...

    def member_model(self) -> type[BaseModel]:
        """The model of what the series keeps of the item."""
        ...

    def step(self, old: BaseModel | None) -> Step | None:
        """The step from the member kept so far (None: none); None when this changes nothing (a
        duplicate, a stale copy)."""
        ...

    def row(self, day: date, figures: DayFigures) -> MetricRow:
        """The metric row of one day of the series."""
        ...


class Member(BaseModel):
    """Where one incident stands in one series, as of `version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    present: bool
    status: Literal["open", "resolved"] | None = None
    resolved_at: Instant | None = None
    time_to_restore_seconds: float | None = None

    @property
    def restored(self) -> bool:
        return self.present and self.status == "resolved" and self.resolved_at is not None

    @property
    def open(self) -> bool:
        return self.present and self.status == "open"

    def entry(self) -> DayEntry | None:
        """(day, entry) the member files in its series when it is restored: its final resolution."""
        if not self.restored or self.resolved_at is None:
            return None
        return self.resolved_at.date(), Entry(at=self.resolved_at, seconds=self.time_to_restore_seconds or 0.0)


def member_of(stored: BaseModel | None, model: type[M]) -> M | None:
    """The member a series kept for an item, as the model its contribution type keeps."""
    if stored is not None and not isinstance(stored, model):
        raise TypeError(f"a series member is a {type(stored).__name__}, not a {model.__name__}")
    return stored


class DayFigures(BaseModel):
    """The entries of one series on one UTC day: their count, the sum and longest of their durations,
    the quantile sketch of the durations (domain/sketch.py), and how many failed.

    The entries themselves are kept one per key beside them. The figures are running sums, each
    change applied once (`applied`, see `Days` in stream/series.py); a longest that leaves is found
    again from the entries. The sum is kept in whole microseconds, the unit of the event times, so
    it is exact in any order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = 0
    sum_microseconds: int = 0
    max_seconds: float = 0.0
    failed: int = 0
    reworked: int = 0
    rollbacks: int = 0
    sketch: dict[int, int] = Field(default_factory=dict, description="Durations per log bucket (domain/sketch.py).")
    applied: Position = -1
    """Position of the last change these figures took in: every change at or before it is in them
    (see `Days` in stream/series.py)."""

    def entered(self, entry: Entry) -> DayFigures:
        seconds = entry.seconds or 0.0
        filed = (
            self.sketch if entry.seconds is None else sketch.added(self.sketch, sketch.bucket(microseconds(seconds)))
        )
        # made from figures already valid: not validated again (the series stage makes two per contribution)
        return DayFigures.model_construct(count=self.count + 1,
                                          sum_microseconds=self.sum_microseconds + microseconds(seconds),
                                          max_seconds=max(self.max_seconds, seconds),
                                          failed=self.failed + int(entry.failed),
                                          reworked=self.reworked + int(entry.rework),
                                          rollbacks=self.rollbacks + int(entry.rollback), sketch=filed,
                                          applied=-1)  # fmt: skip

    def left(self, entry: Entry) -> DayFigures:
        """The figures without this entry, its longest kept (`loses_max` tells when that may be it)."""
        if self.count <= 1:
            return DayFigures()
        filed = self.sketch
        if entry.seconds is not None:
            filed = sketch.added(self.sketch, sketch.bucket(microseconds(entry.seconds)), -1)
        return DayFigures.model_construct(count=self.count - 1,
                                          sum_microseconds=self.sum_microseconds - microseconds(entry.seconds or 0.0),
                                          max_seconds=self.max_seconds, failed=self.failed - int(entry.failed),
                                          reworked=self.reworked - int(entry.rework),
                                          rollbacks=self.rollbacks - int(entry.rollback),
                                          sketch=filed, applied=-1)  # fmt: skip

    def loses_max(self, entry: Entry) -> bool:
        """Whether the longest may leave with this entry: the day's entries then tell the next."""
        return self.count > 1 and entry.seconds is not None and entry.seconds >= self.max_seconds

    def with_max(self, entries: Iterable[Entry]) -> DayFigures:
        """The figures with the longest of these entries (the day's, read back) as their longest."""
        return self.model_copy(update={"max_seconds": max((e.seconds or 0.0 for e in entries), default=0.0)})


@dataclass(frozen=True)
class Day:
    """One day of a series as a scrape reads it: its figures, and its entries for a window that cuts through it."""

    on: date
    figures: DayFigures
    entries: Callable[[], Iterable[Entry]]

    def inside(self, start: datetime, end: datetime) -> bool:
        """Whether the whole day lies in the window (start, end]."""
        begin = datetime.combine(self.on, time(), tzinfo=UTC)
        return start < begin and begin + timedelta(days=1) <= end


def microseconds(seconds: float) -> int:
    return round(seconds * 1_000_000)


class SeriesIndex(BaseModel):
    """What a scrape needs first about a series: what it is, its open items and the days that have entries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    service: str
    env: str
    severity: str
    open: int = 0
    days: tuple[date, ...] = ()
    applied: Position = -1
    """Position of the last change this index took in: the open count is a running sum, each change
    applied once, and every change at or before that position is in it."""


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


@dataclass(frozen=True)
class Totals:
    """The entries of a series in a window: how many, the sum of their durations, how many failed,
    and the sketch of their durations."""

    count: int = 0
    sum_microseconds: int = 0
    failed: int = 0
    sketch: dict[int, int] = field(default_factory=dict)
    reworked: int = 0
    rollbacks: int = 0

    @property
    def mean_seconds(self) -> float | None:
        return self.sum_microseconds / 1e6 / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the durations, within 1% (domain/sketch.py); None without any."""
        return sketch.quantile(self.sketch, q)


def totals(days: Iterable[Day], now: datetime, window: timedelta) -> Totals:
    """The entries of these days that count in (now - window, now].

    A day wholly inside the window counts by its figures; only the days the window's ends cut
    through are read entry by entry.
    """
    start = now - window
    count = total = failed = reworked = rollbacks = 0
    sketches: list[Mapping[int, int]] = []
    cut: dict[int, int] = {}
    for day in days:
        if day.inside(start, now):
            figures = day.figures
            count, total, failed = count + figures.count, total + figures.sum_microseconds, failed + figures.failed
            reworked, rollbacks = reworked + figures.reworked, rollbacks + figures.rollbacks
            sketches.append(figures.sketch)
            continue
        for entry in day.entries():
            if start < entry.at <= now:
                count, total, failed = count + 1, total + microseconds(entry.seconds or 0.0), failed + int(entry.failed)
                reworked, rollbacks = reworked + int(entry.rework), rollbacks + int(entry.rollback)
                if entry.seconds is not None:
                    index = sketch.bucket(microseconds(entry.seconds))
                    cut[index] = cut.get(index, 0) + 1
    return Totals(count, total, failed, sketch.merged([*sketches, cut]), reworked, rollbacks)


class ChangeMember(BaseModel):
    """Where one change stands in one service's change series (derived from the joined facts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    present: bool
    changed_at: Instant | None = None
    failed: bool = False
    lead_seconds: float | None = None
    """Its lead time, when a commit time is known."""
    rework: bool = False
    rollback: bool = False

    def entry(self) -> DayEntry | None:
        """(day, entry) the change files in the series when it counts there, its lead time as the duration."""
        if not self.present or self.changed_at is None:
            return None
        return self.changed_at.date(), Entry(at=self.changed_at, seconds=self.lead_seconds, failed=self.failed,
                                             rework=self.rework, rollback=self.rollback)  # fmt: skip


class RecoveryMember(BaseModel):
    """Where one failed change stands in its service's recovery series: present once it recovered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    present: bool
    recovered_at: Instant | None = None
    """When the last of its live correlated incidents was resolved."""
    seconds: float | None = None
    """Its failed deployment recovery time: change time -> recovered."""

    def entry(self) -> DayEntry | None:
        """(day, entry) the change files in the series once it recovered: the day it recovered."""
        if not self.present or self.recovered_at is None:
            return None
        return self.recovered_at.date(), Entry(at=self.recovered_at, seconds=self.seconds or 0.0)
