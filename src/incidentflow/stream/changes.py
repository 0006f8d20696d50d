"""The change fold: change events and correlation verdicts, by change_id -> change state -> sides and change contributions.

Every decision is made in `domain.correlation`; the design is described in docs/semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from incidentflow.domain import correlation as corr
from incidentflow.domain.events import ChangeEvent
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, PerRecord, Table, load, parse, store
from incidentflow.stream.sides import Correlating, send_sides
from incidentflow.topics import Topics

TABLES = {"changes": "ChangeRecord JSON by change_id"}


@dataclass
class Changes(PerRecord):
    """Runs for every change event and verdict: folds the change and its failure status, files it
    under its scope buckets and contributes it to its service's change series."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    correlating: Correlating
    name: str = "change-fold"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.changes, self.names.verdicts)
        self.changes = self.tables["changes"]

    async def handle(self, message: Record) -> str:
        if message.topic == self.names.verdicts:
            return await self.on_verdict(message)
        return await self.on_change_event(message)

    async def on_change_event(self, message: Record) -> str:
        event = parse(message, ChangeEvent, "a canonical change event")
        key = event.change_id
        if message.key != key.encode():
            await self.context.send(self.names.changes, key, message.value or b"")
            return "rekeyed"
        record = load(self.changes, key, corr.ChangeRecord) or corr.ChangeRecord()
        before = record.facts.change.flat_labels if record.facts else {}
        updated = corr.with_change_event(record, event)
        if updated == record:
            # A redelivery: what it led to is sent again, in case a crash lost it (all idempotent downstream).
            if record.facts is not None:
                await self.send_sides(before, before, record.facts.change)
            await self.contribute(corr.change_contributions(record)[1])
            return "duplicate"
        facts = updated.facts
        assert facts is not None  # noqa: S101  # an event always leaves facts; for the type checker
        updated, contributions = corr.change_contributions(updated)
        store(self.changes, key, updated)
        await self.send_sides(before, facts.change.flat_labels, facts.change)
        await self.contribute(contributions)
        return "applied"

    async def on_verdict(self, message: Record) -> str:
        verdict = parse(message, corr.Verdict, "a correlation verdict")
        key = verdict.change_id
        if message.key != key.encode():
            await self.context.send(self.names.verdicts, key, message.value or b"")
            return "rekeyed"
        record = load(self.changes, key, corr.ChangeRecord) or corr.ChangeRecord()
        updated = corr.with_verdict(record, verdict)
        if updated == record:
            await self.contribute(corr.change_contributions(record)[1])
            return "duplicate"
        updated, contributions = corr.change_contributions(updated)
        store(self.changes, key, updated)
        await self.contribute(contributions)
        return "applied"

    async def send_sides(self, before: dict[str, str], after: dict[str, str], change: corr.Change) -> None:
        await send_sides(self.context, self.names, self.correlating.rules, before, after, corr.Side(change=change))

    async def contribute(self, contributions: list[corr.ChangeContribution]) -> None:
        for contribution in contributions:
            await self.context.send(self.names.contributions, contribution.series, contribution.model_dump_json())
