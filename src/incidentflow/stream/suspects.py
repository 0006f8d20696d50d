"""Correlation suspects: an incident with the changes found for it, by aggregate_id -> `incidentflow.correlations`.

Decides, ranks and publishes correlations and retractions, and sends a verdict (by change_id) to the
change fold when a pair's liveness flips. Every decision is made in `domain.correlation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from incidentflow.domain import correlation as corr
from incidentflow.domain.base import json_of
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, PerRecord, Table, load, parse, rekeyed, store
from incidentflow.stream.sides import Correlating
from incidentflow.topics import Topics

TABLES = {"correlation-suspects": "Suspects JSON by aggregate_id"}


@dataclass
class Suspects(PerRecord):
    """Runs for every incident side and forwarded change: decides, ranks and publishes correlations."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    correlating: Correlating
    name: str = "correlation-suspects"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.suspects,)
        self.suspects = self.tables["correlation-suspects"]
        self.rules = self.correlating.rules

    async def handle(self, message: Record) -> str:
        side = parse(message, corr.Side, "a correlation side")
        if side.incident is not None and side.change is None:
            key = side.incident.aggregate_id
        elif side.change is not None and side.incident is None:
            key = (message.key or b"").decode("utf-8", "replace")
        else:
            raise DeadLetter("a correlation side carries exactly one of `incident` and `change`")
        if await rekeyed(self.context, message, key):
            return "rekeyed"
        if side.closed:  # the incident is past its state horizon: nothing of it changes any more
            if self.suspects.get(key.encode()) is None:
                return "duplicate"
            store(self.suspects, key, None)
            return "closed"
        state = load(self.suspects, key, corr.Suspects) or corr.Suspects()
        if side.incident is not None:
            outcome = corr.with_incident(state, side.incident, self.rules)
        else:
            assert side.change is not None  # noqa: S101  # checked above; for the type checker
            outcome = corr.with_change(state, side.change, self.rules)
        if outcome.state == state:
            if message.position > state.position:
                return "duplicate"  # a redelivery from upstream: a second record would be noise
            # A replay after a crash (this offset already changed the state): what it led to is sent
            # again, in case the crash lost it after the state was saved. Same content, same ids.
            for pair in state.pairs.values():
                await self.context.send(self.names.correlations, key, json_of(pair.record))
                await self.send_verdict(pair, state.incident)
            return "replayed"
        store(self.suspects, key, outcome.state.model_copy(update={"position": message.position}))
        for record in outcome.published:
            await self.context.send(self.names.correlations, record.aggregate_id, json_of(record))
        for pair in outcome.flipped:
            await self.send_verdict(pair, outcome.state.incident)
        return "applied"

    async def send_verdict(self, pair: corr.Pair, incident: corr.IncidentSide | None) -> None:
        verdict = corr.Verdict(aggregate_id=pair.record.aggregate_id, change_id=pair.record.change_id, flips=pair.flips,
                               restored=incident.restored if incident is not None else None)  # fmt: skip
        await self.context.send(self.names.verdicts, verdict.change_id, json_of(verdict))
