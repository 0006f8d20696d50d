"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    """A day's running figures: what `DayFigures` and `ChangeDayFigures` do."""

    def entered(self, entry: E_contra, /) -> Any: ...

    def left(self, entry: E_contra, others: Callable[[], Iterable[E_contra]], /) -> Any: ...


@dataclass(frozen=True)
class Days(Generic[F, E]):
    """The days of the series of one table: each day's running figures under `series|YYYY-MM-DD`
    and each of its entries (a resolution, a change) under `series|YYYY-MM-DD|id`, so that an entry
    entering or leaving a day writes two small values whatever the day holds; a scrape or a maximum
    that must be recomputed reads the entries with one seek (`items_with_prefix`)."""

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

    def leave(self, series: str, day: date, item: str, figures: F) -> F:
        """The day's figures without this item's entry (unchanged when it has none), which is deleted."""
        stored = self.table.pop(_entries_prefix(series, day) + item.encode(), None)
        if stored is None:
            return figures
        left = cast(Figures[E], figures).left(
            self.entry_model.model_validate_json(stored), lambda: self.entries(series, day)
        )
        return cast(F, left)

    def enter(self, series: str, day: date, item: str, entry: E, figures: F) -> F:
        """The day's figures with this item's entry, which is filed (replacing one it had there)."""
        figures = self.leave(series, day, item, figures)
        self.table[_entries_prefix(series, day) + item.encode()] = entry.model_dump_json().encode()
        return cast(F, cast(Figures[E], figures).entered(entry))

    def save(self, series: str, day: date, figures: F) -> None:
        self.table[day_key(series, day)] = figures.model_dump_json().encode()


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
        members[member_key] = move.member.model_dump_json().encode()
        changed: dict[date, metrics.DayFigures] = {}
        item = contribution.aggregate_id
        if move.leave_day is not None:
            changed[move.leave_day] = days.leave(series, move.leave_day, item, days.figures(series, move.leave_day))
        if move.enter_day is not None and move.member.resolved_at is not None:
            figures = changed[move.enter_day] if move.enter_day in changed else days.figures(series, move.enter_day)
            resolution = metrics.Resolution(resolved_at=move.member.resolved_at,
                                            seconds=move.member.time_to_restore_seconds or 0.0)  # fmt: skip
            changed[move.enter_day] = days.enter(series, move.enter_day, item, resolution, figures)
        stored_index = index.get(series.encode())
        current_index = (
            metrics.SeriesIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.SeriesIndex(service=contribution.service, severity=contribution.severity)
        )
        index[series.encode()] = (
            metrics.with_day(current_index, move.enter_day, move.open_delta).model_dump_json().encode()
        )
        for day, figures in sorted(changed.items()):
            days.save(series, day, figures)
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
        members[member_key] = facts.model_dump_json().encode()
        old = known.member(service) if known is not None else None
        new = facts.member(service)
        if old == new:
            return "applied"
        changed: dict[date, metrics.ChangeDayFigures] = {}
        if old is not None and old.day is not None:
            changed[old.day] = days.leave(service, old.day, change_id, days.figures(service, old.day))
        if new.day is not None and new.changed_at is not None:
            figures = changed[new.day] if new.day in changed else days.figures(service, new.day)
            entry = metrics.ChangeEntry(changed_at=new.changed_at, failed=new.failed)
            changed[new.day] = days.enter(service, new.day, change_id, entry, figures)
        stored_index = index.get(service.encode())
        current_index = (
            metrics.ChangeIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.ChangeIndex(service=service)
        )
        index[service.encode()] = current_index.with_day(new.day).model_dump_json().encode()
        for day, figures in sorted(changed.items()):
            days.save(service, day, figures)
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
