"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Protocol, TypeVar, cast

from faust.types import StreamT, TableT
from pydantic import BaseModel, ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.cache import BatchCache
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

    applied: int

    def entered(self, entry: E_contra, /) -> Any: ...

    def left(self, entry: E_contra, /) -> Any: ...

    def loses_max(self, entry: E_contra, /) -> bool: ...

    def with_max(self, entries: Iterable[E_contra], /) -> Any: ...


@dataclass(frozen=True)
class Days(Generic[F, E]):
    """The days of the series of one table: each day's figures under `series|YYYY-MM-DD` and each of
    its entries (a resolution, a change) under `series|YYYY-MM-DD|id`; a scrape reads a day's
    entries with one seek (`items_with_prefix`).

    The figures are running sums, kept right across a crash between the several table writes of
    a batch (they reach their changelogs as separate records, so a worker killed between two of
    them leaves some written and some not, and whoever handles the records again must end right
    from what is there; seen in session 9: a change counted in its day's entries and not in its
    figures). So, for each record:

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
    only; no other change reads them, so a day of many thousands of resolutions costs no more than
    a day of ten. See docs/semantics.md."""

    table: TableT[bytes, bytes]
    figures_model: type[F]
    entry_model: type[E]
    cache: BatchCache[F] | None = None
    """Where an agent's figures wait for the end of its batch; None outside agents (a scrape)."""

    def figures(self, series: str, day: date) -> F:
        if self.cache is not None:
            return self.cache.get(day_key(series, day)) or self.figures_model()
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

    def move(self, series: str, item: str, change: int, leaving: tuple[date, E] | None,
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

    def apply(self, series: str, day: date, change: int, leaving: E | None, entering: E | None) -> F:
        """The day's figures with one item's entry `leaving` taken out and `entering` put in (either
        may be None), saved; once per `change`, the position of the record (figures at it or later
        hold it already). Runs after `leave` and `enter` wrote the entries."""
        stored = self.figures(series, day)
        if cast(Figures[E], stored).applied >= change:
            return stored
        figures: Any = stored
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
            self.cache.set(day_key(series, day), cast(F, figures))
        else:
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


def _change_of(message: Record) -> int:
    """Where the change a record makes to a day or an index comes among all changes of its series:
    its position (offset and item) in the one partition the series lives in."""
    return message.position


def register(worker: Worker) -> None:
    names = worker.names

    # All three are written while handling a contribution, so they live in the partition of its
    # series (the contributions topic is keyed by series): a series has exactly one owner.
    members = BatchCache(worker.table("series-members", "Member JSON by series|aggregate_id"), metrics.Member)
    table = worker.table("series-days", "DayFigures JSON by series|day, Resolution JSON by series|day|aggregate_id")
    figures = BatchCache(table, metrics.DayFigures)
    days = Days(table, metrics.DayFigures, metrics.Resolution, cache=figures)
    index = BatchCache(worker.table("series-index", "SeriesIndex JSON by series"), metrics.SeriesIndex)
    rows: dict[str, MetricRow] = {}
    """The metric rows the batch changed, each sent once with its figures as the batch left them."""

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
        old = members.get(member_key)
        move = metrics.move(old, contribution)
        if move is None:
            return "duplicate"
        change = _change_of(message)
        current_index = index.get(series.encode()) or metrics.SeriesIndex(
            service=contribution.service, severity=contribution.severity
        )
        index.set(series.encode(), metrics.with_day(current_index, move.enter_day, move.open_delta, change))
        changed = days.move(
            series, contribution.aggregate_id, change, old.entry() if old else None, move.member.entry()
        )
        members.set(member_key, move.member)  # written back last (see `finish`)
        for day, figures_now in changed.items():
            row = MetricRow(metric="mttr", service=contribution.service, severity=contribution.severity,
                            day=day.isoformat(), **figures_now.figures().model_dump())  # fmt: skip
            rows[row.key] = row
        return "applied"

    async def finish() -> None:
        """Runs once the batch's contributions are handled: writes back the figures and indexes,
        then the members (a record whose member is written has had every other write: see
        `Days`), and sends each changed metric row."""
        await _write_back(worker, [figures, index, members], rows)

    def begin() -> None:
        _discard([figures, index, members], rows)

    @worker.app.agent(worker.topic(names.contributions), name="series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every incident contribution: moves it within its series and publishes changed days."""
        await worker.consume(stream, record_one, finish, begin)


def register_changes(worker: Worker) -> None:
    """Change series, keyed by service: members, day buckets and an index -> `changes` rows of `incidentflow.metrics`."""
    names = worker.names
    members = BatchCache(worker.table("change-members", "ChangeFacts JSON (joined) by service|change_id"),
                         corr.ChangeFacts)  # fmt: skip
    table = worker.table(
        "change-days", "ChangeDayFigures JSON by service|day, ChangeEntry JSON by service|day|change_id"
    )
    figures = BatchCache(table, metrics.ChangeDayFigures)
    days = Days(table, metrics.ChangeDayFigures, metrics.ChangeEntry, cache=figures)
    index = BatchCache(worker.table("change-index", "ChangeIndex JSON by service"), metrics.ChangeIndex)
    rows: dict[str, MetricRow] = {}

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
        known = members.get(member_key)
        facts = contribution.facts if known is None else known.join(contribution.facts)
        if facts == known:
            return "duplicate"
        old = known.member(service) if known is not None else None
        new = facts.member(service)
        if old == new:
            members.set(member_key, facts)
            return "applied"
        current_index = index.get(service.encode()) or metrics.ChangeIndex(service=service)
        index.set(service.encode(), current_index.with_day(new.day))
        changed = days.move(service, change_id, _change_of(message), old.entry() if old else None, new.entry())
        members.set(member_key, facts)  # written back last (see `finish`)
        for day, figures_now in changed.items():
            count, failed = figures_now.figures()
            row = MetricRow(metric="changes", service=service, severity="-", day=day.isoformat(),
                            changes=count, failed_changes=failed)  # fmt: skip
            rows[row.key] = row
        return "applied"

    async def finish() -> None:
        """As for the metric series: figures and indexes, then members, then the changed rows."""
        await _write_back(worker, [figures, index, members], rows)

    def begin() -> None:
        _discard([figures, index, members], rows)

    @worker.app.agent(worker.topic(names.change_contributions), name="change-series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every change contribution: moves it within its service's days and publishes changed days."""
        await worker.consume(stream, record_one, finish, begin)


def _discard(caches: list[BatchCache[Any]], rows: dict[str, MetricRow]) -> None:
    """Forgets what an earlier batch kept and never wrote back (see `Begin` in stream/context.py)."""
    for cache in caches:
        cache.discard()
    rows.clear()


async def _write_back(worker: Worker, caches: list[BatchCache[Any]], rows: dict[str, MetricRow]) -> None:
    """Writes back each cache in turn, then sends the rows."""
    for cache in caches:
        cache.write_back()
    sent = list(rows.values())
    rows.clear()
    for row in sent:
        await worker.send(worker.names.metrics, row.key, row.model_dump_json())
