"""Flashduty: the standard alert event and the custom change event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from incidentflow.domain.events import (
    AlertAction,
    ChangeStatus,
    Labels,
    Severity,
    change_id,
    content_id,
)
from incidentflow.sources.base import (
    Context,
    Event,
    FieldError,
    Payload,
    PayloadError,
    alert_event,
    change_event,
    from_unix,
    identify,
    not_null,
    validate,
)

SEVERITIES: dict[str, Severity | None] = {
    "Critical": "critical",
    "Warning": "moderate",
    "Info": "informational",
    "Ok": None,
}
STATUSES: dict[str, ChangeStatus] = {
    "Planned": "planned",
    "Ready": "ready",
    "Processing": "processing",
    "Canceled": "canceled",
    "Done": "done",
}
# Unix seconds between 1970 and 9999: anything else is not a plausible event time.
EventTime = Field(default=None, ge=0, le=253402300799, description="Unix seconds; defaults to receive time.")
FlashdutyLabels = Annotated[
    Labels, Field(description="At most 50 labels by default (`INCIDENTFLOW_MAX_LABELS`), the integration's included.")
]


class FlashdutyAlert(Payload):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"event_status": {"const": "Ok"}}, "required": ["event_status"]},
            "then": {"required": ["alert_key"]},
        }
    )

    title_rule: str = Field(min_length=1, max_length=512)
    event_status: Literal["Critical", "Warning", "Info", "Ok"]
    alert_key: Annotated[str, Field(min_length=1, max_length=255)] | SkipJsonSchema[None] = None
    _alert_key_not_null = field_validator("alert_key", mode="before")(not_null)
    event_time: float | None = EventTime
    description: str | None = None
    labels: FlashdutyLabels = Field(default_factory=dict)


class FlashdutyChange(Payload):
    title: str = Field(min_length=1, max_length=512)
    change_key: str = Field(min_length=1, max_length=255)
    change_status: Literal["Planned", "Ready", "Processing", "Canceled", "Done"]
    event_time: float | None = EventTime
    description: str | None = None
    link: str | None = None
    labels: FlashdutyLabels = Field(default_factory=dict)


def parse_alert(payload: Any, ctx: Context) -> list[Event]:
    """Critical/Warning/Info open (or raise) the alert; Ok resolves it and needs its `alert_key`.

    Without `alert_key`, the key is a hash of `title_rule` and the labels, as Flashduty merges
    such events itself.
    """
    body = validate(FlashdutyAlert, payload)
    labels = body.labels
    if body.event_status == "Ok" and body.alert_key is None:
        raise PayloadError([FieldError("alert_key", "required to recover (event_status Ok)")])
    key = body.alert_key or content_id("flashduty", body.title_rule, labels)
    occurred = from_unix(body.event_time) if body.event_time is not None else ctx.received_at
    action: AlertAction = "resolve" if body.event_status == "Ok" else "open"
    event = alert_event(
        ctx,
        event_id=identify(ctx, "flashduty-alert", ctx.integration, lambda: body.model_dump(mode="json"), occurred),
        key=key,
        source="flashduty-alert",
        action=action,
        occurred_at=occurred,
        severity=SEVERITIES[body.event_status] if action == "open" else None,
        title=body.title_rule,
        description=body.description,
        labels=labels,
    )
    return [event]


def parse_change(payload: Any, ctx: Context) -> list[Event]:
    """One status of one change; several events with the same `change_key` are one change."""
    body = validate(FlashdutyChange, payload)
    labels = body.labels
    occurred = from_unix(body.event_time) if body.event_time is not None else ctx.received_at
    committed = _commit_time(labels.get("committed_at"))
    event = change_event(
        ctx,
        event_id=identify(ctx, "flashduty-change", ctx.integration, lambda: body.model_dump(mode="json"), occurred),
        change=change_id(ctx.integration, body.change_key),
        source="flashduty-change",
        status=STATUSES[body.change_status],
        occurred_at=occurred,
        title=body.title,
        description=body.description,
        url=body.link,
        labels=labels,
        committed_at=committed,
    )
    return [event]


def _commit_time(value: str | None) -> datetime | None:
    """The `committed_at` label: an RFC 3339 date-time with its zone, or Unix seconds."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if 0 <= seconds <= 253402300799:
            return from_unix(seconds)
        raise PayloadError([FieldError("labels.committed_at", "Unix seconds between 1970 and 9999")])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise PayloadError([FieldError("labels.committed_at", "must be RFC 3339 with a zone, or Unix seconds")])
    return parsed.astimezone(UTC)
