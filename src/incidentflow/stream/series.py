"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Protocol, TypeVar, cast

from faust.types import Message, StreamT, TableT
from pydantic import BaseModel, ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.store import items_with_prefix


def day_key(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}".encode()


E = TypeVar("E", bound=BaseModel)
E_contra = TypeVar("E_contra", contravariant=True)
F = TypeVar("F", bound=BaseModel)


class Figures(Protocol[E_contra]):
    """A day's figures: what `DayFigures` and `ChangeDayFigures` do."""

    def entered(self, entry: E_contra, /) -> Any: ...


@dataclass(frozen=True)
class Days(Generic[F, E]):
    """The days of the series of one table: each day's figures under `series|YYYY-MM-DD` and each of
    its entries (a resolution, a change) under `series|YYYY-MM-DD|id`; a scrape or a recount reads
    a day's entries with one seek (`items_with_prefix`).

    The figures are recounted from the entries whenever a day changes, never kept as running sums:
    the several table writes of one record reach their changelogs as separate records, so a worker
    killed between two of them leaves some written and some not, and whoever handles the record
    again must reach the right figures from what is there. Each entry is written whole (set or
    deleted), so writing it again is harmless, and a recount from the entries is always exact; a
    running sum missing its last step would stay wrong for good (seen: a change counted in its
    day's entries and not in its figures after a worker SIGKILL). See docs/semantics.md."""

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

    def recount(self, series: str, day: date) -> F:
        """The day's figures from its entries, saved."""
        figures: Any = self.figures_model()
        for entry in self.entries(series, day):
            figures = cast(Figures[E], figures).entered(entry)
        self.table[day_key(series, day)] = figures.model_dump_json().encode()
        return cast(F, figures)


def _entries_prefix(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}|".encode()


def register(worker: Worker) -> None:
    names = worker.names

    # All three are written while handling a contribution, so they live in the partition of its
    # series (the contributions topic is keyed by series): a series has exactly one owner.
    members = worker.table("series-members", "Member JSON by series|aggregate_id")
    days = Days(worker.table("series-days", "DayFigures JSON by series|day, Resolution JSON by series|day|aggregate_id"),
                metrics.DayFigures, metrics.Resolution)  # fmt: skip
    index = worker.table("series-index", "SeriesIndex JSON by series")

    async def record_one(message: Message) -> str:
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
        move = metrics.move(metrics.Member.model_validate_json(stored) if stored else None, contribution)
        if move is None:
            return "duplicate"
        changed: set[date] = set()
        item = contribution.aggregate_id
        if move.leave_day is not None:
            days.leave(series, move.leave_day, item)
            changed.add(move.leave_day)
        if move.enter_day is not None and move.member.resolved_at is not None:
            resolution = metrics.Resolution(resolved_at=move.member.resolved_at,
                                            seconds=move.member.time_to_restore_seconds or 0.0)  # fmt: skip
            days.enter(series, move.enter_day, item, resolution)
            changed.add(move.enter_day)
        stored_index = index.get(series.encode())
        current_index = (
            metrics.SeriesIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.SeriesIndex(service=contribution.service, severity=contribution.severity)
        )
        index[series.encode()] = (
            metrics.with_day(current_index, move.enter_day, move.open_delta).model_dump_json().encode()
        )
        recounted = {day: days.recount(series, day) for day in sorted(changed)}
        # Written last: a record whose member is written has had every other write (see `Days`).
        members[member_key] = move.member.model_dump_json().encode()
        for day, figures in recounted.items():
            row = MetricRow(metric="mttr", service=contribution.service, severity=contribution.severity,
                            day=day.isoformat(), **figures.figures().model_dump())  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.contributions), name="series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every incident contribution: moves it within its series and publishes changed days."""
        async for event in stream.events():
            await worker.handle(event, record_one)


def register_changes(worker: Worker) -> None:
    """Change series, keyed by service: members, day buckets and an index -> `changes` rows of `incidentflow.metrics`."""
    names = worker.names
    members = worker.table("change-members", "ChangeFacts JSON (joined) by service|change_id")
    days = Days(worker.table("change-days", "ChangeDayFigures JSON by service|day, ChangeEntry JSON by service|day|change_id"),
                metrics.ChangeDayFigures, metrics.ChangeEntry)  # fmt: skip
    index = worker.table("change-index", "ChangeIndex JSON by service")

    async def record_one(message: Message) -> str:
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
        changed: set[date] = set()
        if old is not None and old.day is not None:
            days.leave(service, old.day, change_id)
            changed.add(old.day)
        if new.day is not None and new.changed_at is not None:
            days.enter(service, new.day, change_id, metrics.ChangeEntry(changed_at=new.changed_at, failed=new.failed))
            changed.add(new.day)
        stored_index = index.get(service.encode())
        current_index = (
            metrics.ChangeIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.ChangeIndex(service=service)
        )
        index[service.encode()] = current_index.with_day(new.day).model_dump_json().encode()
        recounted = {day: days.recount(service, day) for day in sorted(changed)}
        # Written last: a record whose member is written has had every other write (see `Days`).
        members[member_key] = facts.model_dump_json().encode()
        for day, figures in recounted.items():
            count, failed = figures.figures()
            row = MetricRow(metric="changes", service=service, severity="-", day=day.isoformat(),
                            changes=count, failed_changes=failed)  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.change_contributions), name="change-series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every change contribution: moves it within its service's days and publishes changed days."""
        async for event in stream.events():
            await worker.handle(event, record_one)
