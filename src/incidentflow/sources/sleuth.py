"""Sleuth "Custom Incident Impact Source": triggered/resolved/reopened, with optional id and dates."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from incidentflow.domain.events import AlertAction, AlertEvent
from incidentflow.sources.base import Context, Event, Payload, Timestamp, alert_event, as_utc, identify, validate

ACTIONS: dict[str, AlertAction] = {"triggered": "open", "resolved": "resolve", "reopened": "reopen"}
CURRENT = "current"
"""The aggregate key of webhooks without `id`: the integration's current incident."""


class SleuthPayload(Payload):
    type: Literal["triggered", "resolved", "reopened"]
    id: str | None = Field(default=None, min_length=1, max_length=255)
    date: Timestamp | None = Field(default=None, description="When it happened (ISO 8601); defaults to receive time.")
    ended_date: Timestamp | None = Field(default=None, description="Backfills the resolution of a past incident.")
    title: str | None = None
    url: str | None = None


def parse(payload: Any, ctx: Context) -> list[Event]:
    """One event, or two when `ended_date` backfills the resolution (open at `date`, resolve at `ended_date`)."""
    body = validate(SleuthPayload, payload)
    occurred = as_utc(body.date) if body.date else ctx.received_at
    steps: list[tuple[AlertAction, datetime]] = [(ACTIONS[body.type], occurred)]
    if body.ended_date is not None:
        ended: tuple[AlertAction, datetime] = ("resolve", as_utc(body.ended_date))
        steps = [ended] if body.type == "resolved" else [*steps, ended]
    return [_event(body, action, at, ctx) for action, at in steps]


def _event(body: SleuthPayload, action: AlertAction, at: datetime, ctx: Context) -> AlertEvent:
    key = body.id or CURRENT
    # The vendor id names the incident; with the action and time it names the event.
    identity = body.id if body.id else body.model_dump(mode="json")
    return alert_event(
        ctx,
        event_id=identify(ctx, "sleuth", ctx.integration, identity, action, at),
        key=key,
        source="sleuth",
        action=action,
        occurred_at=at,
        severity=ctx.default_severity,
        title=body.title,
        url=body.url,
    )
