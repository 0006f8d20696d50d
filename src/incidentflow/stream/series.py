"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from datetime import date

from faust.types import Message, StreamT
from pydantic import ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.store import items_with_prefix


def day_key(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}".encode()


def resolutions_prefix(series: str, day: date) -> bytes:
    """Where a day's resolutions are filed, one key each (`series|YYYY-MM-DD|aggregate_id`), beside its figures."""
    return f"{series}|{day.isoformat()}|".encode()


def register(worker: Worker) -> None:
    names = worker.names

    # All three are written while handling a contribution, so they live in the partition of its
    # series (the contributions topic is keyed by series): a series has exactly one owner.
    members = worker.table("series-members", "Member JSON by series|aggregate_id")
    days = worker.table("series-days", "DayFigures JSON by series|day, Resolution JSON by series|day|aggregate_id")
    index = worker.table("series-index", "SeriesIndex JSON by series")

    def day_figures(series: str, day: date) -> metrics.DayFigures:
        stored = days.get(day_key(series, day))
        return metrics.DayFigures.model_validate_json(stored) if stored else metrics.DayFigures()

    def leave(series: str, day: date, aggregate_id: str, figures: metrics.DayFigures) -> metrics.DayFigures:
        """The day without this incident's resolution (unchanged when it holds none)."""
        stored = days.pop(resolutions_prefix(series, day) + aggregate_id.encode(), None)
        if stored is None:
            return figures

        def others() -> list[float]:
            return [metrics.Resolution.model_validate_json(value).seconds
                    for _, value in items_with_prefix(days, resolutions_prefix(series, day))]  # fmt: skip

        return figures.left(metrics.Resolution.model_validate_json(stored).seconds, others)

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
        if move.leave_day is not None:
            changed[move.leave_day] = leave(series, move.leave_day, contribution.aggregate_id,
                                            day_figures(series, move.leave_day))  # fmt: skip
        if move.enter_day is not None and move.member.resolved_at is not None:
            figures = changed[move.enter_day] if move.enter_day in changed else day_figures(series, move.enter_day)
            # A resolution already filed that day (it cannot be, unless one was missed) counts once.
            figures = leave(series, move.enter_day, contribution.aggregate_id, figures)
            resolution = metrics.Resolution(resolved_at=move.member.resolved_at,
                                            seconds=move.member.time_to_restore_seconds or 0.0)  # fmt: skip
            days[resolutions_prefix(series, move.enter_day) + contribution.aggregate_id.encode()] = (
                resolution.model_dump_json().encode()
            )
            changed[move.enter_day] = figures.entered(resolution.seconds)
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
            days[day_key(series, day)] = figures.model_dump_json().encode()
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
    days = worker.table("change-days", "ChangeDay JSON by service|YYYY-MM-DD")
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
        changed: dict[date, metrics.ChangeDay] = {}
        if old is not None and old.day is not None:
            changed[old.day] = _change_day(days.get(day_key(service, old.day))).without(change_id)
        if new.day is not None and new.changed_at is not None:
            current = changed.get(new.day) or _change_day(days.get(day_key(service, new.day)))
            changed[new.day] = current.with_change(change_id, new.changed_at, new.failed)
        stored_index = index.get(service.encode())
        current_index = (
            metrics.ChangeIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.ChangeIndex(service=service)
        )
        index[service.encode()] = current_index.with_day(new.day).model_dump_json().encode()
        for day, bucket in sorted(changed.items()):
            days[day_key(service, day)] = bucket.model_dump_json().encode()
            count, failed = bucket.figures()
            row = MetricRow(metric="changes", service=service, severity="-", day=day.isoformat(),
                            changes=count, failed_changes=failed)  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.change_contributions), name="change-series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every change contribution: moves it within its service's days and publishes changed days."""
        async for event in stream.events():
            await worker.handle(event, record_one)


def _change_day(stored: bytes | None) -> metrics.ChangeDay:
    return metrics.ChangeDay.model_validate_json(stored) if stored else metrics.ChangeDay()
