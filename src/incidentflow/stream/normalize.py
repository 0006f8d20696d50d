"""Normalization: raw envelopes, and CDEvents published straight to Kafka, -> canonical alerts and changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from incidentflow import sources
from incidentflow.domain import lead
from incidentflow.domain.base import json_of
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import AlertEvent, ChangeEvent, Severity
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, DeadLetter, PerRecord, parse
from incidentflow.sources import cdevents
from incidentflow.topics import Topics


@dataclass
class Normalize(PerRecord):
    """Runs for every raw envelope and every record of the CDEvents topic; each yields canonical events (and
    pushes, for the lead time join)."""

    context: Context
    names: Topics
    cdevents_integration: str
    """The integration of the CDEvents topic's events (their aggregate_id and change_id)."""
    max_labels: int
    default_severity: Severity | None = None
    """The severity of the incidents the CDEvents topic's events open (CDEvents carry none)."""
    change_type_label: str = "change_type"
    """The label that names a change's kind (`Settings.change_type_label`)."""
    name: str = "normalize"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.raw, self.names.cdevents)

    async def handle(self, message: Record) -> str:
        if message.topic == self.names.cdevents:
            canonical = self._cdevents(message)
        else:
            envelope = parse(message, RawEnvelope, "a raw envelope")
            try:
                canonical = sources.parse_envelope(envelope, self.change_type_label)
            except sources.PayloadError as error:
                raise DeadLetter(f"{envelope.source} payload rejected: {error}") from None
        for item in canonical:
            if isinstance(item, AlertEvent):
                await self.context.send(self.names.alerts, item.aggregate_id, json_of(item))
            elif isinstance(item, ChangeEvent):
                await self.context.send(self.names.changes, item.change_id, json_of(item))
            else:  # a push: to the lead time join of its repository
                link = lead.LeadInput(link=lead.link_of(item))
                await self.context.send(self.names.lead, item.repository, json_of(link))
        return "normalized"

    def _cdevents(self, message: Record) -> list[sources.Event]:
        """A CloudEvent of the CDEvents topic: received when Kafka stamped it, named by its position."""
        ctx = sources.Context(
            integration=self.cdevents_integration,
            source=cdevents.SOURCE,
            received_at=datetime.fromtimestamp(message.timestamp or 0, UTC),
            request_id=f"{message.topic}:{message.name}",
            max_labels=self.max_labels,
            default_severity=self.default_severity,
            change_type_label=self.change_type_label,
        )
        try:
            return cdevents.parse_kafka(message.header_map(), message.key, message.value or b"", ctx)
        except sources.PayloadError as error:
            raise DeadLetter(f"CDEvent rejected: {error}") from None
