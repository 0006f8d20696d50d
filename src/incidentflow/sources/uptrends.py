"""Uptrends custom integration: the default JSON template of alerting variables (Alert, Reminder, Ok).

Uptrends lets users edit the template, so the alerting variables are read by their documented
paths (`@alert.type`, `@incident.key`, ...) either as nested objects (`{"alert": {"type": ...}}`)
or as flat keys (`"@alert.type"` or `"alert.type"`), with names matched case-insensitively.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from incidentflow.domain.events import AlertAction, AlertEvent, aggregate_id, content_id
from incidentflow.sources.base import Context, Event, Payload, as_utc, build_event, validate

ACTIONS: dict[str, AlertAction] = {"alert": "open", "error": "open", "reminder": "heartbeat", "ok": "resolve"}


class UptrendsAlert(Payload):
    """The variables we use, by their paths without `@`."""

    alert_type: Literal["Alert", "Error", "Reminder", "Ok"] = Field(alias="alert.type")
    incident_key: str = Field(alias="incident.key", min_length=1, max_length=255)
    timestamp_utc: datetime = Field(alias="alert.timestamputc")
    first_error_utc: datetime | None = Field(default=None, alias="alert.firsterrorutc")
    alert_guid: str | None = Field(default=None, alias="alert.alertguid")
    description: str | None = Field(default=None, alias="alert.description")
    downtime_duration: str | None = Field(default=None, alias="alert.downtimeduration")
    monitor_guid: str | None = Field(default=None, alias="monitor.monitorguid")
    monitor_name: str | None = Field(default=None, alias="monitor.name")
    monitor_type: str | None = Field(default=None, alias="monitor.type")
    monitor_url: str | None = Field(default=None, alias="monitor.url")


def flatten(payload: Any, prefix: str = "") -> dict[str, Any]:
    """`{"Alert": {"Type": "Ok"}}` and `{"@alert.type": "Ok"}` both as `{"alert.type": "Ok"}`."""
    if not isinstance(payload, dict):
        return {prefix: payload} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        name = name.lstrip("@").lower()
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def parse(payload: Any, ctx: Context) -> list[Event]:
    """An Alert opens at `firstErrorUtc`; a Reminder is a heartbeat and an Ok resolves, at `timestampUtc`."""
    body = validate(UptrendsAlert, flatten(payload) if isinstance(payload, dict) else payload)
    action = ACTIONS[body.alert_type.lower()]
    occurred = as_utc(body.timestamp_utc)
    if action == "open" and body.first_error_utc is not None:
        occurred = as_utc(body.first_error_utc)
    identity = body.alert_guid or body.model_dump(mode="json", by_alias=True)
    labels = {**ctx.labels, **({"monitor": body.monitor_name} if body.monitor_name else {})}
    event = build_event(
        lambda: AlertEvent(
            event_id=content_id("uptrends", ctx.integration, identity, action, occurred),
            aggregate_id=aggregate_id(ctx.integration, body.incident_key),
            integration=ctx.integration,
            source="uptrends",
            external_aggregate_key=body.incident_key,
            action=action,
            occurred_at=occurred,
            received_at=ctx.received_at,
            severity=ctx.default_severity,
            title=body.monitor_name,
            description=body.description,
            url=body.monitor_url,
            labels=labels,
            request_id=ctx.request_id,
        )
    )
    return [event]
