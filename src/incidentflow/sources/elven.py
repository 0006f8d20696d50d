"""Elven Platform "External Service Incident Custom": alarmed/resolved by `external_aggregate_key`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from incidentflow.domain.events import AlertAction, Severity
from incidentflow.sources.base import Context, Event, Payload, alert_event, identify, validate

ACTIONS: dict[str, AlertAction] = {"alarmed": "open", "resolved": "resolve"}


class ElvenTag(Payload):
    name: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=2048)


class ElvenPayload(Payload):
    """The body of Elven's curl example: title, description, key, action, severity, tags."""

    external_aggregate_key: str = Field(min_length=1, max_length=255)
    action: Literal["alarmed", "resolved"]
    title: str | None = None
    description: str | None = None
    severity: Severity | None = None
    tags: list[ElvenTag] = Field(default_factory=list)


def parse(payload: Any, ctx: Context) -> list[Event]:
    """Elven has no event time of its own: the receive time is the event time.

    Without a `webhook-id`/`Idempotency-Key`, a retried webhook is therefore a separate event (an
    open while open or a resolve while resolved, which moves no episode time).
    """
    body = validate(ElvenPayload, payload)
    if ctx.idempotency_key:
        event_id = identify(ctx, "elven", ctx.integration, "idempotency-key", ctx.idempotency_key)
    else:
        event_id = identify(ctx, "elven", ctx.integration, lambda: body.model_dump(mode="json"), ctx.received_at)
    event = alert_event(
        ctx,
        event_id=event_id,
        key=body.external_aggregate_key,
        source="elven",
        action=ACTIONS[body.action],
        occurred_at=ctx.received_at,
        severity=body.severity or ctx.default_severity,
        title=body.title,
        description=body.description,
        labels={tag.name: tag.value for tag in body.tags},
        labels_field="tags",
    )
    return [event]
