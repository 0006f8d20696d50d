"""Metric series: incident contributions, keyed by `service|severity` -> members, day buckets, index -> `incidentflow.metrics`."""

from __future__ import annotations

from datetime import date

from faust.types import Message, StreamT
from pydantic import ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain import metrics
from incidentflow.domain.records import MetricRow
from incidentflow.stream.context import DeadLetter, Worker


def day_key(series: str, day: date) -> bytes:
    return f"{series}|{day.isoformat()}".encode()


def register(worker: Worker) -> None:
    names = worker.names

    # All three are written while handling a contribution, so they live in the partition of its
    # series (the contributions topic is keyed by series): a series has exactly one owner.
    members = worker.table("series-members", "Member JSON by series|aggregate_id")
    days = worker.table("series-days", "DayBucket JSON by series|YYYY-MM-DD")
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
        changed: dict[date, metrics.DayBucket] = {}
        if move.leave_day is not None:
            changed[move.leave_day] = metrics.leave(
                _bucket(days.get(day_key(series, move.leave_day))), contribution.aggregate_id
            )
        if move.enter_day is not None and move.member.resolved_at is not None:
            current = changed.get(move.enter_day) or _bucket(days.get(day_key(series, move.enter_day)))
            seconds = move.member.time_to_restore_seconds or 0.0
            changed[move.enter_day] = metrics.enter(
                current, contribution.aggregate_id, move.member.resolved_at, seconds
            )
        stored_index = index.get(series.encode())
        current_index = (
            metrics.SeriesIndex.model_validate_json(stored_index)
            if stored_index
            else metrics.SeriesIndex(service=contribution.service, severity=contribution.severity)
        )
        index[series.encode()] = (
            metrics.with_day(current_index, move.enter_day, move.open_delta).model_dump_json().encode()
        )
        for day, bucket in sorted(changed.items()):
            days[day_key(series, day)] = bucket.model_dump_json().encode()
            row = MetricRow(metric="mttr", service=contribution.service, severity=contribution.severity,
                            day=day.isoformat(), **metrics.figures(bucket).model_dump())  # fmt: skip
            await worker.send(names.metrics, row.key, row.model_dump_json())
        return "applied"

    @worker.app.agent(worker.topic(names.contributions), name="series")
    async def record(stream: StreamT[bytes]) -> None:
        """Runs for every incident contribution: moves it within its series and publishes changed day buckets."""
        async for event in stream.events():
            await worker.handle(event, record_one)


def _bucket(stored: bytes | None) -> metrics.DayBucket:
    return metrics.DayBucket.model_validate_json(stored) if stored else metrics.DayBucket()


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
