"""The native format: a canonical alert or change record, as on the topics, posted over HTTP.

The integration comes from the token, never from the body: a body that names another
integration (or an `aggregate_id`/`change_id` of another integration) is rejected. The gateway
stamps `received_at` and `request_id`; `event_id` defaults to a hash of the content.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from incidentflow.domain.events import (
    AlertAction,
    AlertEvent,
    ChangeEvent,
    ChangeKind,
    ChangeStatus,
    Labels,
    Severity,
    aggregate_id,
    change_id,
)
from incidentflow.sources.base import (
    AwareTimestamp,
    Context,
    Event,
    FieldError,
    Payload,
    PayloadError,
    alert_event,
    change_event,
    identify,
    not_null,
    validate,
)


class _NativeCommon(Payload):
    # Fields a canonical record carries that the gateway owns: accepted when consistent with the
    # token, overwritten (received_at, request_id), and left out of the documented schema.
    integration: SkipJsonSchema[str | None] = None
    received_at: SkipJsonSchema[AwareTimestamp | None] = None
    request_id: SkipJsonSchema[str | None] = None

    event_id: str | None = Field(default=None, min_length=1, max_length=512)
    source: str | None = Field(default=None, min_length=1, max_length=128)
    occurred_at: AwareTimestamp
    title: str | None = None
    description: str | None = None
    url: str | None = None
    labels: Labels = Field(default_factory=dict)


class NativeAlert(_NativeCommon):
    aggregate_id: SkipJsonSchema[str | None] = None
    external_aggregate_key: str = Field(min_length=1, max_length=255)
    action: AlertAction
    severity: Severity | None = None


class NativeChange(_NativeCommon):
    # A canonical record names its change by `change_id`; a producer posting by hand gives
    # `change_key`. The document asks for `change_key`.
    model_config = ConfigDict(json_schema_extra={"required": ["change_key", "occurred_at", "status"]})

    change_id: SkipJsonSchema[str | None] = None
    change_key: Annotated[str, Field(min_length=1, max_length=255)] | SkipJsonSchema[None] = None
    _change_key_not_null = field_validator("change_key", mode="before")(not_null)
    status: ChangeStatus
    committed_at: AwareTimestamp | None = Field(
        default=None, description="The earliest commit the change ships: its lead time is the change time minus this."
    )
    kind: ChangeKind | None = Field(
        default=None,
        description="`deployment` (the default), or an unplanned `rollback`, `hotfix` or `revert`; without it, "
        "the `change_type` label gives it.",
    )
    version: str | None = Field(
        default=None, min_length=1, max_length=512, description="What was deployed; without it, the `version` label."
    )


def _same_integration(given: str | None, ctx: Context, field: str) -> None:
    if given is not None and given != ctx.integration:
        raise PayloadError([FieldError(field, f"must be {ctx.integration!r}, the token's integration")])


def parse(payload: Any, ctx: Context) -> list[Event]:
    if isinstance(payload, dict) and "action" in payload:
        return [_alert(validate(NativeAlert, payload), ctx)]
    if isinstance(payload, dict) and "status" in payload:
        return [_change(validate(NativeChange, payload), ctx)]
    raise PayloadError([FieldError("body", "must be an alert (with `action`) or a change (with `status`)")])


def _alert(body: NativeAlert, ctx: Context) -> AlertEvent:
    _same_integration(body.integration, ctx, "integration")
    agg = aggregate_id(ctx.integration, body.external_aggregate_key)
    if body.aggregate_id is not None and body.aggregate_id != agg:
        raise PayloadError([FieldError("aggregate_id", f"must be {agg!r}")])
    return alert_event(
        ctx,
        event_id=body.event_id or identify(ctx, "native", ctx.integration, lambda: _fields(body)),
        key=body.external_aggregate_key,
        source=body.source or "native",
        action=body.action,
        occurred_at=body.occurred_at,
        severity=body.severity or ctx.default_severity,
        title=body.title,
        description=body.description,
        url=body.url,
        labels=body.labels,
    )


def _change(body: NativeChange, ctx: Context) -> ChangeEvent:
    _same_integration(body.integration, ctx, "integration")
    if body.change_key is None and body.change_id is None:
        raise PayloadError([FieldError("change_key", "either change_key or change_id is required")])
    prefix = f"{ctx.integration}:"
    if body.change_id is not None and not body.change_id.startswith(prefix):
        raise PayloadError([FieldError("change_id", f"must start with {prefix!r}")])
    cid = change_id(ctx.integration, body.change_key) if body.change_key else str(body.change_id)
    return change_event(
        ctx,
        event_id=body.event_id or identify(ctx, "native", ctx.integration, lambda: _fields(body)),
        change=cid,
        source=body.source or "native",
        status=body.status,
        occurred_at=body.occurred_at,
        title=body.title,
        description=body.description,
        url=body.url,
        labels=body.labels,
        committed_at=body.committed_at,
        kind=body.kind,
        version=body.version,
    )


def _fields(body: _NativeCommon) -> dict[str, object]:
    """What names a native event without an `event_id`: its content, without what the gateway stamps."""
    fields = body.model_dump(mode="json", exclude={"event_id", "received_at", "request_id"})
    for added in ("committed_at", "kind", "version"):
        if fields.get(added, "") is None:
            del fields[added]  # a change without it is named as before the field existed
    return fields
