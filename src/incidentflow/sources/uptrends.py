"""Uptrends custom integration: the default JSON template of alerting variables (Alert, Reminder, Ok).

Uptrends lets users edit the template, so the alerting variables are read by their documented
paths (`@alert.type`, `@incident.key`, ...) either as nested objects (`{"alert": {"type": ...}}`)
or as flat keys (`"@alert.type"` or `"alert.type"`), with names matched case-insensitively.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from incidentflow.domain.events import AlertAction
from incidentflow.sources.base import (
    TIMESTAMP_SCHEMA,
    Context,
    Event,
    FieldError,
    Payload,
    PayloadError,
    Timestamp,
    alert_event,
    as_utc,
    identify,
    validate,
)

ACTIONS: dict[str, AlertAction] = {"alert": "open", "error": "open", "reminder": "heartbeat", "ok": "resolve"}


class UptrendsAlert(Payload):
    """The variables we use, by their paths without `@`."""

    alert_type: Literal["Alert", "Error", "Reminder", "Ok"] = Field(alias="alert.type")
    incident_key: str = Field(alias="incident.key", min_length=1, max_length=255)
    timestamp_utc: Timestamp = Field(alias="alert.timestamputc")
    first_error_utc: Timestamp | None = Field(default=None, alias="alert.firsterrorutc")
    alert_guid: str | None = Field(default=None, alias="alert.alertguid")
    description: str | None = Field(default=None, alias="alert.description")
    downtime_duration: str | None = Field(default=None, alias="alert.downtimeduration")
    monitor_guid: str | None = Field(default=None, alias="monitor.monitorguid")
    monitor_name: str | None = Field(default=None, alias="monitor.name")
    monitor_type: str | None = Field(default=None, alias="monitor.type")
    monitor_url: str | None = Field(default=None, alias="monitor.url")


_TIME = TIMESTAMP_SCHEMA
_TEXT = {"type": ["string", "null"]}
TEMPLATE_SCHEMA: dict[str, Any] = {
    "title": "UptrendsAlert",
    "description": "Uptrends' default JSON template of alerting variables (flat `@alert.type` keys work too); "
    "variables not listed are accepted and ignored.",
    "type": "object",
    "required": ["Alert", "Incident"],
    "properties": {
        "Alert": {
            "type": "object",
            "required": ["Type", "TimestampUtc"],
            "properties": {
                "Type": {"enum": ["Alert", "Error", "Reminder", "Ok"]},
                "TimestampUtc": _TIME,
                "FirstErrorUtc": {"anyOf": [_TIME, {"type": "null"}]},
                "AlertGuid": _TEXT,
                "Description": _TEXT,
                "DowntimeDuration": _TEXT,
            },
        },
        "Incident": {
            "type": "object",
            "required": ["Key"],
            "properties": {"Key": {"type": "string", "minLength": 1, "maxLength": 255}},
        },
        "Monitor": {
            "type": "object",
            "properties": {"MonitorGuid": _TEXT, "Name": _TEXT, "Type": _TEXT, "Url": _TEXT},
        },
        "AlertDefinition": {"type": "object"},
        "EscalationLevel": {"type": "object"},
    },
}
"""The documented request body (OpenAPI); every variable of the template is accepted at run time."""


GROUPS = ("alert", "incident", "monitor", "alertdefinition", "escalationlevel")


def flatten(payload: dict[Any, Any]) -> dict[str, Any]:
    """`{"Alert": {"Type": "Ok"}}` and `{"@alert.type": "Ok"}` both as `{"alert.type": "Ok"}`.

    Variables sit one level inside their group (`@alert.type`), so only groups are opened; what
    sits below a variable stays as its value and is type-checked like any other.
    """
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = str(key).lstrip("@").lower()
        if name in GROUPS and isinstance(value, dict):
            flat.update({f"{name}.{str(k).lower()}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


def parse(payload: Any, ctx: Context) -> list[Event]:
    """An Alert opens at `firstErrorUtc`; a Reminder is a heartbeat and an Ok resolves, at `timestampUtc`."""
    if isinstance(payload, dict):
        groups = [
            str(k) for k, v in payload.items() if str(k).lstrip("@").lower() in GROUPS and not isinstance(v, dict)
        ]
        if groups:
            raise PayloadError([FieldError(name, "must be an object of alerting variables") for name in groups])
    body = validate(UptrendsAlert, flatten(payload) if isinstance(payload, dict) else payload)
    action = ACTIONS[body.alert_type.lower()]
    occurred = as_utc(body.timestamp_utc)
    if action == "open" and body.first_error_utc is not None:
        occurred = as_utc(body.first_error_utc)
    identity = body.alert_guid or body.model_dump(mode="json", by_alias=True)
    event = alert_event(
        ctx,
        event_id=identify(ctx, "uptrends", ctx.integration, identity, action, occurred),
        key=body.incident_key,
        source="uptrends",
        action=action,
        occurred_at=occurred,
        severity=ctx.default_severity,
        title=body.monitor_name,
        description=body.description,
        url=body.monitor_url,
        labels={"monitor": body.monitor_name} if body.monitor_name else {},
    )
    return [event]
