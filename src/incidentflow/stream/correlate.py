"""Change fold and correlation: three agents, each keyed so that no stage funnels through one partition.

    changes + verdicts --(change_id)--> change fold ----> change contributions (by service)
           |                                   \\
           |                                    `--> scope (by `label=value`)
    incident fold --------------------------------> scope, suspects (by aggregate_id)
    scope: incidents and changes filed by scope label value and hourly slot; whichever side
           arrives second finds the other and forwards the change to the incident's suspects
    suspects: the incident with its forwarded changes; decides, ranks, publishes correlations and
           retractions, and sends a verdict (by change_id) when a pair's liveness flips

Every decision is made in `domain.correlation`; the design is described in docs/semantics.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from faust.types import StreamT, TableT
from pydantic import BaseModel, ValidationError

from incidentflow.domain import correlation as corr
from incidentflow.domain.events import ChangeEvent
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.packed import Record
from incidentflow.stream.store import items_with_prefix

M = TypeVar("M", bound=BaseModel)


def rules_of(worker: Worker) -> corr.Rules:
    settings = worker.settings
    return corr.Rules(scope=settings.correlation_scope_labels, conflict=settings.correlation_conflict_labels)


def window_of(worker: Worker, integration: str) -> tuple[float, float]:
    """(lookback, lookahead) in seconds of an integration; the defaults for one this worker does not know."""
    found = worker.integrations.get(integration)
    window = found.correlation if found is not None else None
    if window is None:
        return 3600.0, 300.0
    return window.lookback_minutes * 60, window.lookahead_minutes * 60


def _load(table: TableT[bytes, bytes], key: str, model: type[M]) -> M | None:
    stored = table.get(key.encode())
    return model.model_validate_json(stored) if stored else None


def _store(table: TableT[bytes, bytes], key: str, value: BaseModel | None) -> None:
    if value is None:
        table.pop(key.encode(), None)
    else:
        table[key.encode()] = value.model_dump_json().encode()


def _parse(message: Record, model: type[M], what: str) -> M:
    try:
        return model.model_validate_json(message.value or b"")
    except ValidationError as error:
        raise DeadLetter(f"not {what}: {error}") from None


async def send_sides(worker: Worker, before: dict[str, str], after: dict[str, str], side: corr.Side) -> None:
    """A side to every scope bucket of its labels now, and a leaving record to the buckets it left."""
    rules = rules_of(worker)
    now = rules.buckets(after)
    for bucket in sorted(set(now) | set(rules.buckets(before))):
        member = bucket in now
        message = side if member else side.model_copy(update={"member": False})
        await worker.send(worker.names.scope, bucket, message.model_dump_json())


def register(worker: Worker) -> None:
    names = worker.names
    rules = rules_of(worker)
    windows = [window_of(worker, name) for name in worker.integrations.by_name] + [(3600.0, 300.0)]
    reach_back = max(lookahead for _, lookahead in windows)  # a change after an open by at most this
    reach_ahead = max(lookback for lookback, _ in windows)  # a change before an open by at most this

    changes = worker.table("changes", "ChangeRecord JSON by change_id")
    scope = worker.table("correlation-scope", "sides, and their ids by hourly slot, by label=value")
    suspects = worker.table("correlation-suspects", "Suspects JSON by aggregate_id")

    async def contribute(contributions: list[corr.ChangeContribution]) -> None:
        for contribution in contributions:
            await worker.send(names.change_contributions, contribution.service, contribution.model_dump_json())

    # -- change fold: key change_id ------------------------------------------------------------
    async def on_change_event(message: Record) -> str:
        change_event = _parse(message, ChangeEvent, "a canonical change event")
        key = change_event.change_id
        if message.key != key.encode():
            await worker.send(names.changes, key, message.value or b"")
            return "rekeyed"
        record = _load(changes, key, corr.ChangeRecord) or corr.ChangeRecord()
        before = record.facts.change.flat_labels if record.facts else {}
        updated = corr.with_change_event(record, change_event)
        if updated == record:
            # A redelivery: what it led to is sent again, in case a crash lost it (all idempotent downstream).
            if record.facts is not None:
                await send_sides(worker, before, before, corr.Side(change=record.facts.change))
            await contribute(corr.change_contributions(record)[1])
            return "duplicate"
        facts = updated.facts
        assert facts is not None  # noqa: S101  # an event always leaves facts; for the type checker
        updated, contributions = corr.change_contributions(updated)
        _store(changes, key, updated)
        await send_sides(worker, before, facts.change.flat_labels, corr.Side(change=facts.change))
        await contribute(contributions)
        return "applied"

    async def on_verdict(message: Record) -> str:
        verdict = _parse(message, corr.Verdict, "a correlation verdict")
        key = verdict.change_id
        if message.key != key.encode():
            await worker.send(names.verdicts, key, message.value or b"")
            return "rekeyed"
        record = _load(changes, key, corr.ChangeRecord) or corr.ChangeRecord()
        updated = corr.with_verdict(record, verdict)
        if updated == record:
            await contribute(corr.change_contributions(record)[1])
            return "duplicate"
        updated, contributions = corr.change_contributions(updated)
        _store(changes, key, updated)
        await contribute(contributions)
        return "applied"

    async def fold_change(message: Record) -> str:
        if message.topic == names.verdicts:
            return await on_verdict(message)
        return await on_change_event(message)

    source = worker.app.topic(names.changes, names.verdicts, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw", partitions=worker.settings.partitions)  # fmt: skip

    @worker.app.agent(source, name="change-fold")
    async def change_fold(stream: StreamT[bytes]) -> None:
        """Runs for every change event and verdict: folds the change and its failure status."""
        await worker.consume(stream, fold_change)

    # -- scope: key label=value ----------------------------------------------------------------
    def ids_in(bucket: str, kind: str, slot: str) -> list[str]:
        """The ids filed in one bucket, kind and hourly slot: one key each, `bucket|kind|slot|id`."""
        prefix = f"{bucket}|{kind}|{slot}|".encode()
        return [key[len(prefix) :].decode() for key, _ in items_with_prefix(scope, prefix)]

    def refile(bucket: str, kind: str, item: str, old: str | None, new: str | None) -> None:
        """Moves an id between hourly slots (either slot may be None: not filed)."""
        if old is not None and old != new:
            scope.pop(f"{bucket}|{kind}|{old}|{item}".encode(), None)
        if new is not None:
            key = f"{bucket}|{kind}|{new}|{item}".encode()
            if old != new or key not in scope:  # every update of a known side: already filed
                scope[key] = b""

    async def forward(aggregate_id: str, change: corr.Change) -> None:
        await worker.send(names.suspects, aggregate_id, corr.Side(change=change).model_dump_json())

    async def scope_incident(bucket: str, side: corr.IncidentSide, member: bool) -> str:
        entry_key = f"{bucket}|i|{side.aggregate_id}"
        stored = _load(scope, entry_key, corr.IncidentSide)
        if stored is not None and stored.version > side.version:
            return "stale"
        old_slot = corr.slot_of(stored.opened_at) if stored else None
        if not member:
            refile(bucket, "si", side.aggregate_id, old_slot, None)
            _store(scope, entry_key, None)
            return "left"
        refile(bucket, "si", side.aggregate_id, old_slot, corr.slot_of(side.opened_at))
        _store(scope, entry_key, side)
        if stored is not None and stored.version != side.version and stored.view() == side.view():
            return "applied"  # nothing that decides a match moved
        start = side.opened_at - timedelta(seconds=side.lookback_seconds)
        end = side.opened_at + timedelta(seconds=side.lookahead_seconds)
        for slot in corr.slots_between(start, end):
            for change_id in ids_in(bucket, "sc", slot):
                filed = _load(scope, f"{bucket}|c|{change_id}", corr.ScopeChange)
                if filed is None or corr.match(side, filed.change, rules) is None:
                    continue
                await forward(side.aggregate_id, filed.change)
                if side.aggregate_id not in filed.forwarded:
                    forwarded = tuple(sorted((*filed.forwarded, side.aggregate_id)))
                    _store(scope, f"{bucket}|c|{change_id}", filed.model_copy(update={"forwarded": forwarded}))
        return "applied"

    async def scope_change(bucket: str, change: corr.Change, member: bool) -> str:
        entry_key = f"{bucket}|c|{change.change_id}"
        filed = _load(scope, entry_key, corr.ScopeChange)
        merged = corr.join(filed.change if filed else None, change)
        forwarded = set(filed.forwarded) if filed else set()
        old_slot = corr.slot_of(filed.change.changed_at) if filed and filed.change.changed_at else None
        if not member:
            for aggregate_id in sorted(forwarded):
                await forward(aggregate_id, merged)
            refile(bucket, "sc", change.change_id, old_slot, None)
            _store(scope, entry_key, None)
            return "left"
        new_slot = corr.slot_of(merged.changed_at) if merged.changed_at else None
        refile(bucket, "sc", change.change_id, old_slot, new_slot)
        if merged.counted and merged.changed_at is not None:
            start = merged.changed_at - timedelta(seconds=reach_back)
            end = merged.changed_at + timedelta(seconds=reach_ahead)
            for slot in corr.slots_between(start, end):
                for aggregate_id in ids_in(bucket, "si", slot):
                    side = _load(scope, f"{bucket}|i|{aggregate_id}", corr.IncidentSide)
                    if side is not None and corr.match(side, merged, rules) is not None:
                        forwarded.add(aggregate_id)
        # Incidents it was forwarded to before hear of it again, so that a moved or canceled change retracts.
        for aggregate_id in sorted(forwarded):
            await forward(aggregate_id, merged)
        _store(scope, entry_key, corr.ScopeChange(change=merged, forwarded=tuple(sorted(forwarded))))
        return "applied"

    async def scope_one(message: Record) -> str:
        side = _parse(message, corr.Side, "a correlation side")
        bucket = (message.key or b"").decode("utf-8", "replace")
        if side.incident is not None and side.change is None:
            return await scope_incident(bucket, side.incident, side.member)
        if side.change is not None and side.incident is None:
            return await scope_change(bucket, side.change, side.member)
        raise DeadLetter("a correlation side carries exactly one of `incident` and `change`")

    @worker.app.agent(worker.topic(names.scope), name="correlation-scope")
    async def scope_agent(stream: StreamT[bytes]) -> None:
        """Runs for every side filed under a scope label: finds the other side within the window."""
        await worker.consume(stream, scope_one)

    # -- suspects: key aggregate_id ------------------------------------------------------------
    async def suspects_one(message: Record) -> str:
        side = _parse(message, corr.Side, "a correlation side")
        if side.incident is not None and side.change is None:
            key = side.incident.aggregate_id
        elif side.change is not None and side.incident is None:
            key = (message.key or b"").decode("utf-8", "replace")
        else:
            raise DeadLetter("a correlation side carries exactly one of `incident` and `change`")
        if message.key != key.encode():
            await worker.send(names.suspects, key, message.value or b"")
            return "rekeyed"
        state = _load(suspects, key, corr.Suspects) or corr.Suspects()
        if side.incident is not None:
            outcome = corr.with_incident(state, side.incident, rules)
        else:
            assert side.change is not None  # noqa: S101  # checked above; for the type checker
            outcome = corr.with_change(state, side.change, rules)
        if outcome.state == state:
            if message.position > state.position:
                return "duplicate"  # a redelivery from upstream: a second record would be noise
            # A replay after a crash (this offset already changed the state): what it led to is sent
            # again, in case the crash lost it after the state was saved. Same content, same ids.
            for pair in state.pairs.values():
                await worker.send(names.correlations, key, pair.record.model_dump_json())
                await send_verdict(pair)
            return "replayed"
        _store(suspects, key, outcome.state.model_copy(update={"position": message.position}))
        for record in outcome.published:
            await worker.send(names.correlations, record.aggregate_id, record.model_dump_json())
        for pair in outcome.flipped:
            await send_verdict(pair)
        return "applied"

    async def send_verdict(pair: corr.Pair) -> None:
        verdict = corr.Verdict(aggregate_id=pair.record.aggregate_id, change_id=pair.record.change_id, flips=pair.flips)
        await worker.send(names.verdicts, verdict.change_id, verdict.model_dump_json())

    @worker.app.agent(worker.topic(names.suspects), name="correlation-suspects")
    async def suspects_agent(stream: StreamT[bytes]) -> None:
        """Runs for every incident side and forwarded change: decides, ranks and publishes correlations."""
        await worker.consume(stream, suspects_one)
