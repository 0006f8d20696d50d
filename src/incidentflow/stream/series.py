"""The series stage: every metric's contributions, keyed by series -> members, day figures, index -> `incidentflow.metrics`.

One stage and three tables for every metric: a contribution (`domain/series.py`) says which
series and item it is for and how it moves the item's member (`metrics.SeriesContribution.step`);
this stage files the item's entry on its day, keeps the day's running figures and the series'
index, and publishes each changed day as a metric row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel, ValidationError

from incidentflow.domain import metrics
from incidentflow.domain.base import from_json, json_of
from incidentflow.domain.contributions import ChangeContribution, IncidentContribution
from incidentflow.domain.series import CONTRIBUTION, Closed
from incidentflow.runtime.cache import BatchCache
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, Table, rekeyed
from incidentflow.topics import Topics

TABLES = {
    "series-members": "member JSON by series|item",
    "series-days": "DayFigures JSON by series|day, Entry JSON by series|day|item",
    "series-index": "SeriesIndex JSON by series",
}


def day_key(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}".encode()


def _entries_prefix(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}|".encode()


@dataclass(frozen=True)
class Days:
    """The days of the series of one table: each day's figures under `series|YYYY-MM-DD` and each of
    its entries under `series|YYYY-MM-DD|item`; a scrape reads a day's entries with one seek.

    The figures are running sums, kept right across a crash between the several table writes of
    a batch (they reach their changelogs as separate records, so a worker killed between two of
    them leaves some written and some not, and whoever handles the records again must end right
    from what is there). So, for each record:

    1. its entries are written whole (`leave`, `enter`): writing them again is harmless;
    2. then each changed day's figures, with the record's change applied once (`apply`): the
       figures hold the position of the last change they took in, and a day at that record's
       position or later is left alone;
    3. then, by the caller, the member, which makes the record a duplicate from then on.

    Records of a series come in order (one partition), so figures at a record's position or later
    hold its change, and figures before it do not: a record handled again, whichever of its and
    its batch's writes survived, applies its change once. That holds as well when a batch's writes
    of one key are written back once (`cache`: the figures of a busy day, changed by most records
    of a batch) and only the last position reaches the changelog. What leaves is computed from the
    member before the record (never from the entries, which step 1 may have rewritten already). A
    longest that leaves is found again by reading the day's entries (one seek), for the longest
    only; no other change reads them, so a day of many thousands of entries costs no more than
    a day of ten. See docs/semantics.md."""

    table: Table
    cache: BatchCache[metrics.DayFigures] | None = None
    """Where a stage's figures wait for the end of its batch; None outside the stage (a scrape)."""

    def figures(self, series: str, day: date, partition: int | None = None) -> metrics.DayFigures:
        """The day's figures; `partition` outside of the stage (a scrape), else the current record's."""
        if self.cache is not None:
            return self.cache.get(day_key(series, day)) or metrics.DayFigures()
        stored = self.table.get(day_key(series, day), partition)
        return from_json(metrics.DayFigures, stored) if stored else metrics.DayFigures()

    def entries(self, series: str, day: date, partition: int | None = None) -> list[metrics.Entry]:
        """The day's entries; `partition` outside of the stage (a scrape), else the current record's."""
        found = self.table.prefixed(_entries_prefix(series, day), partition)
        return [from_json(metrics.Entry, value) for _, value in found]

    def leave(self, series: str, day: date, item: str) -> None:
        """Removes this item's entry from the day (nothing when it has none)."""
        self.table.pop(_entries_prefix(series, day) + item.encode())

    def enter(self, series: str, day: date, item: str, entry: metrics.Entry) -> None:
        """Files this item's entry on the day, replacing one it had there."""
        self.table.set(_entries_prefix(series, day) + item.encode(), json_of(entry))

    def move(self, series: str, item: str, change: int, leaving: metrics.DayEntry | None,
             entering: metrics.DayEntry | None) -> dict[date, metrics.DayFigures]:  # fmt: skip
        """Steps 1 and 2 for one item: its entry `leaving` (day, entry it had there) taken out, its
        entry `entering` put in; returns the figures of each day that changed."""
        if leaving is not None:
            self.leave(series, leaving[0], item)
        if entering is not None:
            self.enter(series, entering[0], item, entering[1])
        changed = sorted({pair[0] for pair in (leaving, entering) if pair is not None})
        return {
            day: self.apply(series, day, change, leaving[1] if leaving is not None and leaving[0] == day else None,
                            entering[1] if entering is not None and entering[0] == day else None)
            for day in changed
        }  # fmt: skip

    def apply(self, series: str, day: date, change: int, leaving: metrics.Entry | None,
              entering: metrics.Entry | None) -> metrics.DayFigures:  # fmt: skip
        """The day's figures with one item's entry `leaving` taken out and `entering` put in (either
        may be None), saved; once per `change`, the position of the record (figures at it or later
        hold it already). Runs after `leave` and `enter` wrote the entries."""
        figures = self.figures(series, day)
        if figures.applied >= change:
            return figures
        max_left = leaving is not None and figures.loses_max(leaving)
        if leaving is not None:
            figures = figures.left(leaving)
        if entering is not None:
            figures = figures.entered(entering)
        if max_left:
            # The entries hold this record's change already; they tell the longest, and only that: the
            # counts stay running sums, since a record handled again after a crash may find entries
            # that later records of its batch rewrote (each of those puts the longest right when it
            # is handled again: a longest that leaves is read back, one that enters is taken in).
            figures = figures.with_max(self.entries(series, day))
        figures = figures.model_copy(update={"applied": change})
        if self.cache is not None:
            self.cache.set(day_key(series, day), figures)
        else:
            self.table.set(day_key(series, day), json_of(figures))
        return figures


@dataclass
class Series:
    """Runs for every contribution of every metric: moves its item within its series and publishes
    each changed day, once per batch."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    name: str = "series"
    topics: tuple[str, ...] = ()
    members: dict[type[BaseModel], BatchCache[BaseModel]] = field(default_factory=dict)
    """One cache per member model, over the one members table (each metric's keys are its own)."""
    figures: BatchCache[metrics.DayFigures] = field(init=False)
    index: BatchCache[metrics.SeriesIndex] = field(init=False)
    days: Days = field(init=False)
    rows: dict[tuple[str, date], tuple[IncidentContribution | ChangeContribution, metrics.DayFigures]] = field(
        default_factory=dict
    )
    """The days the batch changed, by series: each sent once as a metric row, with its figures as
    the batch left them."""

    def __post_init__(self) -> None:
        self.topics = (self.names.contributions,)
        self.figures = BatchCache(self.tables["series-days"], metrics.DayFigures, self.context)
        self.days = Days(self.tables["series-days"], cache=self.figures)
        self.index = BatchCache(self.tables["series-index"], metrics.SeriesIndex, self.context)

    def _members(self, model: type[BaseModel]) -> BatchCache[BaseModel]:
        cache = self.members.get(model)
        if cache is None:
            cache = self.members[model] = BatchCache(self.tables["series-members"], model, self.context)
        return cache

    async def handle(self, message: Record) -> str:
        try:
            contribution = CONTRIBUTION.validate_json(message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a metric contribution: {error}") from None
        series = contribution.series
        if await rekeyed(self.context, message, series):
            return "rekeyed"
        members = self._members(contribution.member_model())
        member_key = f"{series}|{contribution.item}".encode()
        if isinstance(contribution, Closed):
            return self.close(contribution, members, member_key)
        step = contribution.step(members.get(member_key))
        if step is None:
            return "duplicate"
        if step.leaving is not None or step.entering is not None or step.open_delta:
            change = message.position
            index = self.index.get(series.encode()) or metrics.SeriesIndex(
                metric=contribution.metric,
                service=contribution.service,
                env=contribution.env,
                severity=contribution.severity,
            )
            enter_day = step.entering[0] if step.entering is not None else None
            self.index.set(series.encode(), metrics.with_day(index, enter_day, step.open_delta, change))
            for day, figures in self.days.move(series, contribution.item, change, step.leaving, step.entering).items():
                self.rows[(series, day)] = (contribution, figures)  # the row is made once, at `finish`
        members.set(member_key, step.member)  # written back last (see `finish`)
        return "applied"

    def close(self, closed: Closed, members: BatchCache[BaseModel], member_key: bytes) -> str:
        """An item past the state horizon: its entry and member go; the day's figures keep it."""
        member = members.get(member_key)
        if member is None:
            return "duplicate"
        entry = closed.entry(member)
        if entry is not None:
            self.days.leave(closed.series, entry[0], closed.item)
        members.set(member_key, None)
        return "closed"

    def begin(self) -> None:
        for cache in self._caches():
            cache.discard()
        self.rows.clear()

    async def finish(self) -> None:
        """Writes back the figures and indexes, then the members (a record whose member is written
        has had every other write: see `Days`), and sends each changed metric row."""
        for cache in self._caches():
            cache.write_back()
        changed = list(self.rows.items())
        self.rows.clear()
        for (_, day), (contribution, figures) in changed:
            row = contribution.row(day, figures)
            await self.context.send(self.names.metrics, row.key, json_of(row))

    def _caches(self) -> list[BatchCache[metrics.DayFigures] | BatchCache[metrics.SeriesIndex] | BatchCache[BaseModel]]:
        return [self.figures, self.index, *self.members.values()]
