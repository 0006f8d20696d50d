"""Correlation scope: incident and change sides, keyed by scope label (`service=checkout`) and filed by hourly slot.

Whichever side arrives second finds the other within the window and forwards the change to the
incident's suspects (stream/suspects.py). Every decision is made in `domain.correlation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from incidentflow.domain import changes as chg
from incidentflow.domain import correlation as corr
from incidentflow.domain.base import json_of
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, PerRecord, Table, load, parse, store
from incidentflow.stream.sides import Correlating
from incidentflow.topics import Topics

TABLES = {"correlation-scope": "sides, and their ids by hourly slot, by label=value"}


@dataclass
class Scope(PerRecord):
    """Runs for every side filed under a scope label: finds the other side within the window."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    correlating: Correlating
    name: str = "correlation-scope"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.scope,)
        self.scope = self.tables["correlation-scope"]
        self.rules = self.correlating.rules
        self.reach_back, self.reach_ahead = self.correlating.reach

    async def handle(self, message: Record) -> str:
        side = parse(message, corr.Side, "a correlation side")
        bucket = (message.key or b"").decode("utf-8", "replace")
        if side.incident is not None and side.change is None:
            return await self.file_incident(bucket, side.incident, side.member)
        if side.change is not None and side.incident is None:
            return await self.file_change(bucket, side.change, side.member, side.closed)
        raise DeadLetter("a correlation side carries exactly one of `incident` and `change`")

    def ids_in(self, bucket: str, kind: str, slot: str) -> list[str]:
        """The ids filed in one bucket, kind and hourly slot: one key each, `bucket|kind|slot|id`."""
        prefix = f"{bucket}|{kind}|{slot}|".encode()
        return [key[len(prefix) :].decode() for key, _ in self.scope.prefixed(prefix)]

    def refile(self, bucket: str, kind: str, item: str, old: str | None, new: str | None) -> None:
        """Moves an id between hourly slots (either slot may be None: not filed)."""
        if old is not None and old != new:
            self.scope.pop(f"{bucket}|{kind}|{old}|{item}".encode())
        if new is not None:
            key = f"{bucket}|{kind}|{new}|{item}".encode()
            if old != new or not self.scope.has(key):  # every update of a known side: already filed
                self.scope.set(key, b"")

    async def forward(self, aggregate_id: str, change: chg.Change) -> None:
        await self.context.send(self.names.suspects, aggregate_id, json_of(corr.Side(change=change)))

    async def file_incident(self, bucket: str, side: corr.IncidentSide, member: bool) -> str:
        entry_key = f"{bucket}|i|{side.aggregate_id}"
        stored = load(self.scope, entry_key, corr.IncidentSide)
        if stored is not None and stored.version > side.version:
            return "stale"
        old_slot = corr.slot_of(stored.opened_at) if stored else None
        if not member:
            self.refile(bucket, "si", side.aggregate_id, old_slot, None)
            store(self.scope, entry_key, None)
            return "left"
        self.refile(bucket, "si", side.aggregate_id, old_slot, corr.slot_of(side.opened_at))
        store(self.scope, entry_key, side)
        if stored is not None and stored.version != side.version and stored.view() == side.view():
            return "applied"  # nothing that decides a match moved
        start = side.opened_at - timedelta(seconds=side.lookback_seconds)
        end = side.opened_at + timedelta(seconds=side.lookahead_seconds)
        for slot in corr.slots_between(start, end):
            for change_id in self.ids_in(bucket, "sc", slot):
                filed = load(self.scope, f"{bucket}|c|{change_id}", corr.ScopeChange)
                if filed is None or corr.match(side, filed.change, self.rules) is None:
                    continue
                await self.forward(side.aggregate_id, filed.change)
                if side.aggregate_id not in filed.forwarded:
                    forwarded = tuple(sorted((*filed.forwarded, side.aggregate_id)))
                    store(self.scope, f"{bucket}|c|{change_id}", filed.model_copy(update={"forwarded": forwarded}))
        return "applied"

    async def file_change(self, bucket: str, change: chg.Change, member: bool, closed: bool = False) -> str:
        entry_key = f"{bucket}|c|{change.change_id}"
        filed = load(self.scope, entry_key, corr.ScopeChange)
        merged = chg.join(filed.change if filed else None, change)
        forwarded = set(filed.forwarded) if filed else set()
        old_slot = corr.slot_of(filed.change.changed_at) if filed and filed.change.changed_at else None
        if not member:
            if not closed:  # a change past its horizon changes nothing where it was forwarded
                for aggregate_id in sorted(forwarded):
                    await self.forward(aggregate_id, merged)
            self.refile(bucket, "sc", change.change_id, old_slot, None)
            store(self.scope, entry_key, None)
            return "closed" if closed else "left"
        new_slot = corr.slot_of(merged.changed_at) if merged.changed_at else None
        self.refile(bucket, "sc", change.change_id, old_slot, new_slot)
        if merged.counted and merged.changed_at is not None:
            start = merged.changed_at - timedelta(seconds=self.reach_back)
            end = merged.changed_at + timedelta(seconds=self.reach_ahead)
            for slot in corr.slots_between(start, end):
                for aggregate_id in self.ids_in(bucket, "si", slot):
                    side = load(self.scope, f"{bucket}|i|{aggregate_id}", corr.IncidentSide)
                    if side is not None and corr.match(side, merged, self.rules) is not None:
                        forwarded.add(aggregate_id)
        # Incidents it was forwarded to before hear of it again, so that a moved or canceled change retracts.
        for aggregate_id in sorted(forwarded):
            await self.forward(aggregate_id, merged)
        store(self.scope, entry_key, corr.ScopeChange(change=merged, forwarded=tuple(sorted(forwarded))))
        return "applied"
