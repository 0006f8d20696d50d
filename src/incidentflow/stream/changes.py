"""The change fold: change events, correlation, history and lead time verdicts, by change_id -> change state
-> sides, deployments, lead time requests and change contributions.

Every decision is made in `domain.change_fold` (and `domain.changes`); the design is described in docs/semantics.md.
Past the state horizon (runtime/horizon.py) a change is closed: its state goes, and the series and
scope stages are told to forget it (`close`); a later event of a day beyond the horizon is `too_late`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from incidentflow.domain import change_fold as cf
from incidentflow.domain import changes as chg
from incidentflow.domain import contributions as contrib
from incidentflow.domain import correlation as corr
from incidentflow.domain import history as hist
from incidentflow.domain import lead as lt
from incidentflow.domain.base import json_of
from incidentflow.domain.events import ChangeEvent
from incidentflow.domain.series import closing_change
from incidentflow.runtime.horizon import Horizon
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, PerRecord, Table, TooLate, load, parse, rekeyed, store
from incidentflow.stream.sides import Correlating, send_sides
from incidentflow.topics import Topics

TABLES = {"changes": "ChangeRecord JSON by change_id; the state horizon's clock and due days"}


@dataclass
class Changes(PerRecord):
    """Runs for every change event and verdict: folds the change and its failure status, files it
    under its scope buckets and contributes it to its service's change series."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    correlating: Correlating
    horizon_days: int = 90
    name: str = "change-fold"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.changes, self.names.verdicts, self.names.history_verdicts, self.names.lead_verdicts)
        self.changes = self.tables["changes"]
        self.horizon = Horizon(self.changes, self.horizon_days)

    async def handle(self, message: Record) -> str:
        if message.topic == self.names.verdicts:
            return await self.on_verdict(message)
        if message.topic == self.names.history_verdicts:
            return await self.on_history_verdict(message)
        if message.topic == self.names.lead_verdicts:
            return await self.on_lead_verdict(message)
        return await self.on_change_event(message)

    async def on_change_event(self, message: Record) -> str:
        event = parse(message, ChangeEvent, "a canonical change event")
        key = event.change_id
        if await rekeyed(self.context, message, key):
            return "rekeyed"
        record = load(self.changes, key, cf.ChangeRecord) or cf.ChangeRecord()
        day, clock = event.occurred_at.date(), self.horizon.clock()
        if self.horizon.too_old(day, clock) or self.horizon.past(record.since, day):
            raise TooLate
        before = record.facts.change.flat_labels if record.facts else {}
        updated = cf.with_change_event(record, event)
        if updated == record:
            # A redelivery: what it led to is sent again, in case a crash lost it (all idempotent downstream).
            if record.facts is not None:
                await self.send_sides(before, before, record.facts.change)
            await self.contribute(contrib.change_contributions(record)[1])
            await self.send_deployment(record)
            await self.ask_lead(None, record)
            outcome = "duplicate"
        else:
            facts = updated.facts
            assert facts is not None  # noqa: S101  # an event always leaves facts; for the type checker
            updated, contributions = contrib.change_contributions(updated)
            self.save(key, record, updated)
            await self.send_sides(before, facts.change.flat_labels, facts.change)
            await self.contribute(contributions)
            if _deployment_of(updated) != _deployment_of(record):
                await self.send_deployment(updated)
            await self.ask_lead(record, updated)
            outcome = "applied"
        if clock is None or day > clock:
            await self.advance(day)
        return outcome

    async def on_verdict(self, message: Record) -> str:
        verdict = parse(message, corr.Verdict, "a correlation verdict")
        return await self.told(message, verdict.change_id, lambda record: cf.with_verdict(record, verdict))

    async def on_history_verdict(self, message: Record) -> str:
        verdict = parse(message, hist.HistoryVerdict, "a deployment history verdict")
        return await self.told(message, verdict.change_id, lambda record: cf.with_history_verdict(record, verdict))

    async def on_lead_verdict(self, message: Record) -> str:
        verdict = parse(message, lt.LeadVerdict, "a lead time verdict")
        return await self.told(message, verdict.change_id, lambda record: cf.with_lead_verdict(record, verdict))

    async def told(self, message: Record, key: str, apply: Callable[[cf.ChangeRecord], cf.ChangeRecord]) -> str:
        """A verdict on the change `key` (from the suspects or a deployment history): applied to its
        record, which waits for the change's events when none came yet."""
        if await rekeyed(self.context, message, key):
            return "rekeyed"
        record = load(self.changes, key, cf.ChangeRecord) or cf.ChangeRecord()
        updated = apply(record)
        if updated == record:
            await self.contribute(contrib.change_contributions(record)[1])
            if message.topic == self.names.history_verdicts:
                await self.ask_lead(None, record)
            return "duplicate"
        if updated.facts is None and updated.waiting_since is None:
            updated = updated.model_copy(update={"waiting_since": self.horizon.clock()})
        updated, contributions = contrib.change_contributions(updated)
        self.save(key, record, updated)
        await self.contribute(contributions)
        await self.ask_lead(record, updated)
        return "applied"

    async def ask_lead(self, before: cf.ChangeRecord | None, after: cf.ChangeRecord) -> None:
        """The change's lead time request to the join of its repository when it changed (`before` None:
        sent again), and a withdrawal from the repository it asked before when that is another one."""
        old = before.facts.lead_request if before is not None and before.facts is not None else None
        new = after.facts.lead_request if after.facts is not None else None
        if before is not None and old == new:
            return
        if old is not None and (new is None or new[0] != old[0]):
            withdrawal = lt.LeadInput(change_id=old[1].change_id)
            await self.context.send(self.names.lead, old[0], json_of(withdrawal))
        if new is not None:
            await self.context.send(self.names.lead, new[0], json_of(lt.LeadInput(request=new[1])))

    async def send_deployment(self, record: cf.ChangeRecord) -> None:
        """The change to the deployment history of its service and env while it counts there, and a
        leave to every other one it counted in (the history forgets it there)."""
        if record.facts is None:
            return
        change = record.facts.change
        deployment = change.deployment
        for service, env in record.series:
            here = deployment is not None and (service, env) == (change.service, change.env)
            item = hist.HistoryInput(deployment=deployment) if here else hist.HistoryInput(
                change_id=change.change_id, member=False)  # fmt: skip
            await self.context.send(self.names.history, hist.series_of(service, env), json_of(item))

    def save(self, key: str, before: cf.ChangeRecord, after: cf.ChangeRecord) -> None:
        store(self.changes, key, after)
        self.horizon.file(key, before.since, after.since)

    async def advance(self, day: date) -> None:
        """The partition's clock moves on to `day`: every change now past its horizon is closed."""
        for since, change_id in self.horizon.due(day):
            await self.close(change_id, since)
        self.horizon.set_clock(day)  # last: a record handled again closes what it had not

    async def close(self, change_id: str, since: date) -> None:
        """Removes the change's state, and has the scope and series stages forget it (its figures stay)."""
        record = load(self.changes, change_id, cf.ChangeRecord)
        if record is not None and record.since == since:
            store(self.changes, change_id, None)
            for closed in closing_change(record):
                await self.context.send(self.names.contributions, closed.series, json_of(closed))
            if record.facts is not None:
                change = record.facts.change
                message = json_of(corr.Side(change=change, member=False, closed=True))
                for bucket in self.correlating.rules.buckets(change.flat_labels):
                    await self.context.send(self.names.scope, bucket, message)
        self.horizon.file(change_id, since, None)

    async def send_sides(self, before: dict[str, str], after: dict[str, str], change: chg.Change) -> None:
        await send_sides(self.context, self.names, self.correlating.rules, before, after, corr.Side(change=change))

    async def contribute(self, contributions: list[contrib.ChangeContribution]) -> None:
        for contribution in contributions:
            await self.context.send(self.names.contributions, contribution.series, json_of(contribution))


def _deployment_of(record: cf.ChangeRecord) -> tuple[hist.Deployment | None, tuple[tuple[str, str], ...]]:
    """What the deployment histories know of a change: it as a deployment, and the series it counted in."""
    return (record.facts.change.deployment if record.facts is not None else None), record.series
