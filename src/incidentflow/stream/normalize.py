"""Normalization: raw envelopes -> canonical alerts and changes, keyed by their aggregate."""

from __future__ import annotations

from dataclasses import dataclass

from incidentflow import sources
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import AlertEvent
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, PerRecord, parse
from incidentflow.topics import Topics


@dataclass
class Normalize(PerRecord):
    """Runs for every raw envelope; each yields one or more canonical events."""

    context: Context
    names: Topics
    name: str = "normalize"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.raw,)

    async def handle(self, message: Record) -> str:
        envelope = parse(message, RawEnvelope, "a raw envelope")
        try:
            canonical = sources.parse_envelope(envelope)
        except sources.PayloadError as error:
            raise DeadLetter(f"{envelope.source} payload rejected: {error}") from None
        for item in canonical:
            if isinstance(item, AlertEvent):
                await self.context.send(self.names.alerts, item.aggregate_id, item.model_dump_json())
            else:
                await self.context.send(self.names.changes, item.change_id, item.model_dump_json())
        return "normalized"
