"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Protocol, TypeVar, cast

from faust.types import StreamT, TableT
from pydantic import BaseModel, ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.packed import Record
from incidentflow.stream.store import items_with_prefix


def day_key(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}".encode()


E = TypeVar("E", bound=BaseModel)
E_contra = TypeVar("E_contra", contravariant=True)
F = TypeVar("F", bound=BaseModel)


class Figures(Protocol[E_contra]):
    """A day's figures: what `DayFigures` and `ChangeDayFigures` do."""

    applied: str | None

    def entered(self, entry: E_contra, /) -> Any: ...

    def left(self, entry: E_contra, /) -> Any: ...


@dataclass(frozen=True)
class Days(Generic[F, E]):
    """The days of the series of one table: each day's figures under `series|YYYY-MM-DD` and each of
    its entries (a resolution, a change) under `series|YYYY-MM-DD|id`; a scrape reads a day's
    entries with one seek (`items_with_prefix`).

    The figures are running sums, kept right across a crash between the several table writes of
    one record (they reach their changelogs as separate records, so a worker killed between two of
    them leaves some written and some not, and whoever handles the record again must end right
    from what is there; seen in session 9: a change counted in its day's entries and not in its
    figures). So, for each record:

    1. its entries are written whole (`leave`, `enter`): writing them again is harmless;
    2. then each changed day's figures, with the record's change applied once (`apply`): the
       figures name the change they took in last, and a day that names it already is left alone;
    3. then, by the caller, the member, which makes the record a duplicate from then on.

    A record handled again finds each day's figures either without its change (applied now) or
    naming it (kept). Records of a partition are handled in order, so no other change of the day
    can come between. What leaves is computed from the member before the record (never from the
    entries, which step 1 may have rewritten already). A maximum that leaves is found again by
    reading the day's entries (one seek); no other change reads them, so a day of many thousands
    of resolutions costs no more than a day of ten. See docs/semantics.md."""

    table: TableT[bytes, bytes]
    figures_model: type[F]
    entry_model: type[E]

    def figures(self, series: str, day: date) -> F:
        stored = self.table.get(day_key(series, day))
        return self.figures_model.model_validate_json(stored) if stored else self.figures_model()

    def entries(self, series: str, day: date, partition: int | None = None) -> list[E]:
        """The day's entries; `partition` outside of an agent (a scrape), else the current record's."""
        found = items_with_prefix(self.table, _entries_prefix(series, day), partition=partition)
        return [self.entry_model.model_validate_json(value) for _, value in found]

    def leave(self, series: str, day: date, item: str) -> None:
        """Removes this item's entry from the day (nothing when it has none)."""
        self.table.pop(_entries_prefix(series, day) + item.encode(), None)

    def enter(self, series: str, day: date, item: str, entry: E) -> None:
        """Files this item's entry on the day, replacing one it had there."""
        self.table[_entries_prefix(series, day) + item.encode()] = entry.model_dump_json().encode()

    def move(self, series: str, item: str, change: str, leaving: tuple[date, E] | None,
             entering: tuple[date, E] | None) -> dict[date, F]:  # fmt: skip
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

    def apply(self, series: str, day: date, change: str, leaving: E | None, entering: E | None) -> F:
        """The day's figures with one item's entry `leaving` taken out and `entering` put in (either
        may be None), saved; once per `change` (a name no other change of this day has, such as the
        record's offset). Runs after `leave` and `enter` wrote the entries."""
        stored = self.figures(series, day)
        if cast(Figures[E], stored).applied == change:
            return stored
        figures: Any = stored
        if leaving is not None:
            figures = figures.left(leaving)
        if figures is None:  # its maximum left: the entries, which hold the change already, tell the rest
            figures = self.recount(series, day)
        elif entering is not None:
            figures = figures.entered(entering)
        figures = figures.model_copy(update={"applied": change})
        self.table[day_key(series, day)] = figures.model_dump_json().encode()
        return cast(F, figures)

    def recount(self, series: str, day: date) -> F:
        """The day's figures counted from its entries (not saved)."""
        figures: Any = self.figures_model()
        for entry in self.entries(series, day):
            figures = cast(Figures[E], figures).entered(entry)
        return cast(F, figures)


def _entries_prefix(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}|".encode()


def _change_of(message: Record) -> str:
    """What names the change a record makes to a day or an index: its partition, offset and item,
    which no other record of its topic has (a series lives in one partition of it)."""
    return message.name


def register(worker: Worker) -> None:
    names = worker.names

    # All three are written while handling a contribution, so they live in the partition of its
    # series (the contributions topic is keyed by series): a series has exactly one owner.
    members = worker.table("series-members", "Member JSON by series|aggregate_id")
    days = Days(worker.table("series-days", "DayFigures JSON by series|day, Resolution JSON by series|day|aggregate_id"),
                metrics.DayFigures, metrics.Resolution)  # fmt: skip
    index = worker.table("series-index", "SeriesIndex JSON by series")

    async def record_one(message: Record) -> str:
        try:
            contribution = metrics.Contribution.model_validate_json(message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a metric contribution: {error}") from None
        series = contribution.series
        if message.key != series.encode():
            await worker.send(names.contributions, series, message.value or b"")
            return "rekeyed"
        member_key = f"{series}|{contribution.aggregate_id}".encode()
        stored = members.get(member_key)
        old = metrics.Member.model_validate_json(stored) if stored else None
        move = metrics.move(old, contribution)
        if move is None:
            return "duplicate"
        change = _change_of(message)
        stored_index = index.get(series.encode())
        current_index = (
            metrics.SeriesIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.SeriesIndex(service=contribution.service, severity=contribution.severity)
        )
        index[series.encode()] = (
            metrics.with_day(current_index, move.enter_day, move.open_delta, change).model_dump_json().encode()
        )
        changed = days.move(
            series, contribution.aggregate_id, change, old.entry() if old else None, move.member.entry()
        )
        # Written last: a record whose member is written has had every other write (see `Days`).
        members[member_key] = move.member.model_dump_json().encode()
        for day, figures in changed.items():
            row = MetricRow(metric="mttr", service=contribution.service, severity=contribution.severity,
                            day=day.isoformat(), **figures.figures().model_dump())  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.contributions), name="series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every incident contribution: moves it within its series and publishes changed days."""
        await worker.consume(stream, record_one)


def register_changes(worker: Worker) -> None:
    """Change series, keyed by service: members, day buckets and an index -> `changes` rows of `incidentflow.metrics`."""
    names = worker.names
    members = worker.table("change-members", "ChangeFacts JSON (joined) by service|change_id")
    days = Days(worker.table("change-days", "ChangeDayFigures JSON by service|day, ChangeEntry JSON by service|day|change_id"),
                metrics.ChangeDayFigures, metrics.ChangeEntry)  # fmt: skip
    index = worker.table("change-index", "ChangeIndex JSON by service")

    async def record_one(message: Record) -> str:
        try:
            contribution = corr.ChangeContribution.model_validate_json(message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a change contribution: {error}") from None
        service = contribution.service
        if message.key != service.encode():
            await worker.send(names.change_contributions, service, message.value or b"")
            return "rekeyed"
        change_id = contribution.facts.change.change_id
        member_key = f"{service}|{change_id}".encode()
        stored = members.get(member_key)
        known = corr.ChangeFacts.model_validate_json(stored) if stored else None
        facts = contribution.facts if known is None else known.join(contribution.facts)
        if facts == known:
            return "duplicate"
        old = known.member(service) if known is not None else None
        new = facts.member(service)
        if old == new:
            members[member_key] = facts.model_dump_json().encode()
            return "applied"
        stored_index = index.get(service.encode())
        current_index = (
            metrics.ChangeIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.ChangeIndex(service=service)
        )
        index[service.encode()] = current_index.with_day(new.day).model_dump_json().encode()
        changed = days.move(service, change_id, _change_of(message), old.entry() if old else None, new.entry())
        # Written last: a record whose member is written has had every other write (see `Days`).
        members[member_key] = facts.model_dump_json().encode()
        for day, figures in changed.items():
            count, failed = figures.figures()
            row = MetricRow(metric="changes", service=service, severity="-", day=day.isoformat(),
                            changes=count, failed_changes=failed)  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.change_contributions), name="change-series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every change contribution: moves it within its service's days and publishes changed days."""
        await worker.consume(stream, record_one)
