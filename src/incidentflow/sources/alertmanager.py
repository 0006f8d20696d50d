"""Prometheus Alertmanager's webhook (version 4): each alert of a notification is one incident, keyed by its fingerprint.

Alertmanager sends a group's alerts again at every group interval and repeat interval, so an event
is named by what it says, not by the delivery: the alert's fingerprint, the action and its time
(`startsAt` for a firing alert, `endsAt` for a resolved one). A repeat is the same event; an alert
that fires again after it resolved has a new `startsAt`, which opens a new episode of the same
incident. A resolved alert also carries the open it resolves (at `startsAt`, the same event a
firing notification gave), so an incident is complete even when its firing notification was lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationInfo, WithJsonSchema, field_validator, model_validator

from incidentflow.domain.events import AlertEvent, Labels, Severity
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

SOURCE = "alertmanager"
SEVERITIES: dict[str, Severity] = {
    "critical": "critical",
    "high": "high",
    "error": "high",
    "warning": "moderate",
    "moderate": "moderate",
    "low": "low",
    "info": "informational",
    "informational": "informational",
}
"""The `severity` label's value (any case) -> severity; another value, or none, takes the integration's default."""

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


class AlertmanagerAlert(Payload):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"status": {"const": "resolved"}}, "required": ["status"]},
            "then": {"required": ["endsAt"], "properties": {"endsAt": TIMESTAMP_SCHEMA}},
        }
    )

    status: Literal["firing", "resolved"]
    labels: Labels = Field(default_factory=dict, description="The alert's labels; they become the event's labels.")
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Timestamp = Field(alias="startsAt")
    ends_at: Annotated[datetime | None, WithJsonSchema({"type": "string"})] = Field(
        default=None,
        alias="endsAt",
        description="When a resolved alert ended (ISO 8601); read only when `status` is `resolved` "
        "(a firing alert's is a zero time or a guess).",
    )
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _end_is_read(cls, value: Any) -> Any:
        """A resolved alert without `endsAt` is refused by the field's check, which runs only on given values."""
        if isinstance(value, dict) and value.get("status") == "resolved" and "endsAt" not in value:
            return {**value, "endsAt": None}
        return value

    @field_validator("ends_at", mode="before")
    @classmethod
    def _ended(cls, value: Any, info: ValidationInfo) -> datetime | None:
        """The end of a resolved alert, which must have one; a firing alert's is not read."""
        resolved = info.data.get("status") == "resolved"
        if value is None and resolved:
            raise ValueError("required when the alert is resolved")
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return as_utc(_TIMESTAMP.validate_python(value)) if resolved else None


class AlertmanagerPayload(Payload):
    """The webhook body Alertmanager posts to a `webhook_configs` receiver."""

    version: str | None = None
    group_key: str | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"] | None = None
    receiver: str | None = None
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)

    @field_validator("truncated_alerts", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        """JSON's integers: `3.0` is 3 (JSON Schema's `integer`), `3.5` is not."""
        return int(value) if isinstance(value, float) and value.is_integer() else value


def parse(payload: Any, ctx: Context) -> list[Event]:
    """Every alert of the notification: a firing one opens at `startsAt`; a resolved one gives that
    open and its resolution at `endsAt`. One bad alert refuses the whole notification."""
    body = validate(AlertmanagerPayload, payload)
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, alert in enumerate(body.alerts):
        try:
            events.extend(_events(alert, index, ctx))
        except PayloadError as error:  # over the label limit: every alert's error, then refused whole
            errors.extend(error.errors)
    if errors:
        raise PayloadError(errors)
    return events


def truncated(payload: Any) -> int:
    """How many alerts Alertmanager left out of a notification (its `max_alerts`), read after `parse` accepted it."""
    return int(payload.get("truncatedAlerts", 0))  # a whole number: `parse` checked it


def _events(alert: AlertmanagerAlert, index: int, ctx: Context) -> list[AlertEvent]:
    started = as_utc(alert.starts_at)
    steps: list[tuple[Literal["open", "resolve"], datetime]] = [("open", started)]
    if alert.ends_at is not None:
        steps.append(("resolve", alert.ends_at))
    severity = SEVERITIES.get(alert.labels.get("severity", "").lower(), ctx.default_severity)
    title = alert.annotations.get("summary") or alert.labels.get("alertname")
    return [
        alert_event(
            ctx,
            event_id=identify(ctx, SOURCE, ctx.integration, alert.fingerprint, action, at),
            key=alert.fingerprint,
            source=SOURCE,
            action=action,
            occurred_at=at,
            severity=severity if action == "open" else None,
            title=title,
            description=alert.annotations.get("description"),
            url=alert.generator_url or None,
            labels=alert.labels,
            labels_field=f"alerts.{index}.labels",
        )
        for action, at in steps
    ]
