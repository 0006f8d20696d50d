"""PagerDuty V3 webhooks: an incident's triggered, resolved and reopened events; every other event type is ignored."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from incidentflow.domain.events import AlertAction, Severity
from incidentflow.sources.base import (
    AwareTimestamp,
    Context,
    Event,
    Payload,
    alert_event,
    identify,
    inlined,
    validate,
)

SOURCE = "pagerduty"
ACTIONS: dict[str, AlertAction] = {
    "incident.triggered": "open",
    "incident.resolved": "resolve",
    "incident.reopened": "reopen",
}
PRIORITIES: dict[str, Severity] = {
    "p1": "critical",
    "p2": "high",
    "p3": "moderate",
    "p4": "low",
    "p5": "informational",
}
"""An incident's priority (its summary, any case) -> severity; it wins over the urgency."""
URGENCIES: dict[str, Severity] = {"high": "high", "low": "low"}
"""An incident's urgency -> severity, when it has no priority of the five above."""
SIGNATURE_HEADER = "x-pagerduty-signature"


class PagerDutyReference(Payload):
    id: str | None = None
    summary: str | None = None


class PagerDutyIncident(Payload):
    """`event.data` of the incident event types."""

    id: str = Field(min_length=1, max_length=255)
    title: str | None = None
    html_url: str | None = None
    status: str | None = None
    urgency: str | None = None
    service: PagerDutyReference | None = None
    priority: PagerDutyReference | None = None


class PagerDutyEvent(Payload):
    id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=255)
    resource_type: str | None = None
    occurred_at: AwareTimestamp
    data: PagerDutyIncident = Field(
        description="The incident (read for `incident.triggered`, `incident.resolved` and `incident.reopened`)."
    )


class PagerDutyEventType(Payload):
    event_type: str = Field(min_length=1, max_length=255)


class PagerDutyTyped(Payload):
    event: PagerDutyEventType


class PagerDutyWebhook(Payload):
    """A V3 webhook delivery: one event."""

    event: PagerDutyEvent


def _webhook_schema() -> dict[str, Any]:
    event = PagerDutyEvent.model_json_schema()
    return {
        "title": "PagerDutyWebhook",
        "description": "A PagerDuty V3 webhook delivery. Only the incident event types below are read and need "
        "their event's `id`, `occurred_at` and incident; any other event type is answered 204 and not stored.",
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": {
                "type": "object",
                "required": ["event_type"],
                "properties": {"event_type": event["properties"]["event_type"]},
                "if": {"properties": {"event_type": {"enum": sorted(ACTIONS)}}},
                "then": inlined(event, event.get("$defs", {})),
            }
        },
    }


WEBHOOK_SCHEMA = _webhook_schema()
"""The documented body (the gateway's OpenAPI document): the event's fields are required only for the types read."""


def parse(payload: Any, ctx: Context) -> list[Event]:
    """`incident.triggered` opens the incident named by `event.data.id`, `incident.resolved` resolves
    it and `incident.reopened` reopens it, at `event.occurred_at`; any other event type gives no event."""
    action = ACTIONS.get(validate(PagerDutyTyped, payload).event.event_type)
    if action is None:
        return []
    event = validate(PagerDutyWebhook, payload).event
    incident = event.data
    service = incident.service.summary if incident.service else None
    return [
        alert_event(
            ctx,
            event_id=identify(ctx, SOURCE, ctx.integration, event.id),
            key=incident.id,
            source=SOURCE,
            action=action,
            occurred_at=event.occurred_at,
            severity=severity(incident, ctx.default_severity) if action != "resolve" else None,
            title=incident.title,
            url=incident.html_url,
            labels={"service": service} if service else None,
            labels_field="event.data.service",
        )
    ]


def severity(incident: PagerDutyIncident, default: Severity | None) -> Severity | None:
    """The priority's severity (P1..P5), else the urgency's (high, low), else the integration's default."""
    priority = (incident.priority.summary or "").lower() if incident.priority else ""
    if priority in PRIORITIES:
        return PRIORITIES[priority]
    return URGENCIES.get((incident.urgency or "").lower(), default)


def sign(secret: str, body: bytes) -> str:
    """The `v1=` signature PagerDuty sends for a body (for `incidentflow send` and tests)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> bool:
    """True when `X-PagerDuty-Signature` holds the body's `v1` signature; during a secret's rotation
    PagerDuty sends one signature per secret, comma-separated, and one match is enough."""
    expected = sign(secret, body)
    candidates = [c.strip() for c in headers.get(SIGNATURE_HEADER, "").split(",")]
    return any(hmac.compare_digest(expected, c) for c in candidates if c.startswith("v1="))
