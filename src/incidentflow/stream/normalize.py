"""Normalization: raw envelopes -> canonical alerts and changes, keyed by their aggregate."""

from __future__ import annotations

from faust.types import StreamT
from pydantic import ValidationError

from incidentflow import sources
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import AlertEvent
from incidentflow.stream.context import DeadLetter, Worker
from incidentflow.stream.packed import Record


def register(worker: Worker) -> None:
    names = worker.names

    async def normalize_one(message: Record) -> str:
        try:
            envelope = RawEnvelope.model_validate_json(message.value or b"")
        except ValidationError as error:
            raise DeadLetter(f"not a raw envelope: {error}") from None
        try:
            canonical = sources.parse_envelope(envelope)
        except sources.PayloadError as error:
            raise DeadLetter(f"{envelope.source} payload rejected: {error}") from None
        for item in canonical:
            if isinstance(item, AlertEvent):
                await worker.send(names.alerts, item.aggregate_id, item.model_dump_json())
            else:
                await worker.send(names.changes, item.change_id, item.model_dump_json())
        return "normalized"

    @worker.app.agent(worker.topic(names.raw), name="normalize")
    async def normalize(stream: StreamT[bytes]) -> None:
        """Runs for every raw envelope; each yields one or more canonical events."""
        await worker.consume(stream, normalize_one)
