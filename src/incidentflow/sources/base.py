"""What every source adapter shares: the receive context, payload errors, and the adapter signature."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema

from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import (
    CHANGE_KINDS,
    AlertAction,
    AlertEvent,
    ChangeEvent,
    ChangeKind,
    ChangeStatus,
    Commit,
    PushEvent,
    Severity,
    aggregate_id,
    content_id,
)


@dataclass(frozen=True)
class Context:
    """What the gateway knows about a delivery besides its body."""

    integration: str
    source: str
    received_at: datetime
    request_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    default_severity: Severity | None = None
    idempotency_key: str | None = None
    max_labels: int | None = None
    """Most labels an event may carry, static labels included; None: no bound (canonical records)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The request's headers a source reads (lower case): CloudEvents' `ce-*` and `content-type`, GitHub's
    `x-github-event` and `x-github-delivery`, GitLab's `x-gitlab-event` (`sources.HEADERS`)."""
    checking: bool = False
    """True in the gateway, which only checks a payload: event ids are not needed there (`identify`)."""
    change_type_label: str = "change_type"
    """The label that gives a change its kind on every source (`INCIDENTFLOW_CHANGE_TYPE_LABEL`)."""

    @classmethod
    def of(cls, envelope: RawEnvelope, checking: bool = False, change_type_label: str = "change_type") -> Context:
        return cls(
            integration=envelope.integration,
            source=envelope.source,
            received_at=envelope.received_at,
            request_id=envelope.request_id,
            labels=envelope.labels,
            default_severity=envelope.default_severity,
            idempotency_key=envelope.idempotency_key,
            max_labels=envelope.max_labels,
            headers=envelope.headers,
            checking=checking,
            change_type_label=change_type_label,
        )


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class PayloadError(ValueError):
    """A body that is valid JSON but not a valid payload of its source; lists every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str = "") -> PayloadError:
        return cls(
            [
                FieldError(prefix + (".".join(str(p) for p in e["loc"]) or "body"), e["msg"])
                for e in error.errors(include_url=False)
            ]
        )


class Payload(BaseModel):
    """Base of vendor payload models: strict types (no "1" for 1, no 0 for a date), unknown fields ignored.

    Vendors add fields over time, so fields we do not read are ignored; fields we read must have
    exactly the JSON type the OpenAPI document gives them.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True, str_max_length=65536)


YEARS = (1000, 9989)
"""Accepted years of vendor timestamps: far from the calendar's edges, where a zone offset would overflow."""
TIMESTAMP_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2})-",
    "description": f"ISO 8601 date-time, years {YEARS[0]} to {YEARS[1]}",
}


def not_null(value: Any) -> Any:
    """For optional fields documented as strings: leaving one out is fine, sending `null` is not."""
    if value is None:
        raise ValueError("must be a string when given (leave the field out instead of null)")
    return value


def _iso_string(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time") from None
        if not YEARS[0] <= parsed.year <= YEARS[1]:
            raise ValueError(f"must be a date-time in the years {YEARS[0]} to {YEARS[1]}")
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed
    if isinstance(value, datetime):
        return value
    raise ValueError("must be an ISO 8601 date-time string")


Timestamp = Annotated[datetime, BeforeValidator(_iso_string), WithJsonSchema(TIMESTAMP_SCHEMA)]
"""A date-time given as an ISO 8601 string; without a zone it is read as UTC by `as_utc`."""
AwareTimestamp = Annotated[AwareDatetime, BeforeValidator(_iso_string), WithJsonSchema(TIMESTAMP_SCHEMA)]
"""A date-time given as an ISO 8601 string with its zone."""


UNCHECKED_ID = "0" * 32
"""The event id of every event while a payload is only checked: a hash id is always a valid one."""


def identify(ctx: Context, *parts: object) -> str:
    """The content hash that names an event (`content_id` of `parts`), computed only where the
    events are kept: the gateway checks a payload, and the worker's normalization names its events.
    A hash is 32 hex digits, always a valid id, so skipping it in the check changes no answer.
    A part given as a function (`lambda: body.model_dump(mode="json")`) is called only when needed."""
    if ctx.checking:
        return UNCHECKED_ID
    return content_id(*(part() if callable(part) else part for part in parts))


M = TypeVar("M", bound=BaseModel)

Event = AlertEvent | ChangeEvent | PushEvent
Adapter = Callable[[Any, Context], list[Event]]
"""parse(decoded JSON body, context) -> canonical events; raises PayloadError, nothing else."""


def validate(model: type[M], payload: Any) -> M:
    """Validate a decoded body against a payload model, as a PayloadError on failure."""
    if not isinstance(payload, dict):
        raise PayloadError([FieldError("body", "must be a JSON object")])
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise PayloadError.from_validation(error) from None


def as_utc(value: datetime) -> datetime:
    """Vendor times without a zone are UTC (Sleuth and Uptrends send `...Utc` values that way)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def from_unix(seconds: float) -> datetime:
    """A Unix time in seconds as a UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def alert_event(
    ctx: Context,
    *,
    event_id: str,
    key: str,
    source: str,
    action: AlertAction,
    occurred_at: datetime,
    severity: Severity | None = None,
    title: str | None = None,
    description: str | None = None,
    url: str | None = None,
    labels: Mapping[str, str] | None = None,
    labels_field: str = "labels",
) -> AlertEvent:
    """A canonical alert of the context's integration: identity, receive time and request id come from `ctx`;
    the integration's static labels are the base that `labels` override. `labels_field` names the
    payload's field the labels came from, in the error of an event over the label limit."""
    merged = bounded_labels(ctx, labels, labels_field)
    return build_event(
        lambda: AlertEvent(
            event_id=event_id,
            aggregate_id=aggregate_id(ctx.integration, key),
            integration=ctx.integration,
            source=source,
            external_aggregate_key=key,
            action=action,
            occurred_at=occurred_at,
            received_at=ctx.received_at,
            severity=severity,
            title=title,
            description=description,
            url=url,
            labels=merged,
            request_id=ctx.request_id,
        )
    )


def change_event(
    ctx: Context,
    *,
    event_id: str,
    change: str,
    source: str,
    status: ChangeStatus,
    occurred_at: datetime,
    title: str | None = None,
    description: str | None = None,
    url: str | None = None,
    labels: Mapping[str, str] | None = None,
    labels_field: str = "labels",
    committed_at: datetime | None = None,
    kind: ChangeKind | None = None,
    version: str | None = None,
) -> ChangeEvent:
    """A canonical change of the context's integration; `change` is its full `change_id`.

    Without an explicit `kind` and `version`, the labels give them: the `change_type` label
    (`ctx.change_type_label`; `rollback`, `hotfix` or `revert`, any case; another value is an
    ordinary deployment) and the `version` label."""
    merged = bounded_labels(ctx, labels, labels_field)
    if kind is None:
        named = merged.get(ctx.change_type_label, "").strip().lower()
        kind = next((k for k in CHANGE_KINDS if k == named), "deployment")
    version = version if version is not None else merged.get("version") or None
    return build_event(
        lambda: ChangeEvent(
            event_id=event_id,
            change_id=change,
            integration=ctx.integration,
            source=source,
            status=status,
            occurred_at=occurred_at,
            received_at=ctx.received_at,
            title=title,
            description=description,
            url=url,
            labels=merged,
            request_id=ctx.request_id,
            committed_at=committed_at,
            kind=kind,
            version=version,
        )
    )


NO_SHA = "0" * 40
"""The `before` of a push that creates a ref, and the `after` of one that deletes it (GitHub, GitLab)."""


def push_event(
    ctx: Context,
    *,
    event_id: str,
    source: str,
    repository: str,
    after: str,
    before: str | None,
    commits: list[tuple[str, datetime]],
    ref: str | None = None,
) -> PushEvent:
    """A push of the context's integration: a link from `before` (None or all zeros: the start of a
    chain) to `after`, with the commits it brought."""
    return build_event(
        lambda: PushEvent(
            event_id=event_id,
            integration=ctx.integration,
            source=source,
            repository=repository,
            ref=ref,
            before=None if before in (None, "", NO_SHA) else before,
            after=after,
            commits=[Commit(id=sha, timestamp=at) for sha, at in commits],
            received_at=ctx.received_at,
            request_id=ctx.request_id,
        )
    )


def bounded_labels(ctx: Context, labels: Mapping[str, str] | None, field_name: str) -> dict[str, str]:
    """The event's labels over the integration's static ones, within the context's label limit."""
    merged = {**ctx.labels, **(labels or {})}
    if ctx.max_labels is not None and len(merged) > ctx.max_labels:
        static = len(ctx.labels)
        with_static = f" with the integration's {static} static labels" if static else ""
        raise PayloadError([FieldError(field_name, f"{len(merged)} labels{with_static}; at most {ctx.max_labels}")])
    return merged


def build_event(build: Callable[[], M]) -> M:
    """Build a canonical event; a value the canonical model rejects becomes a PayloadError."""
    try:
        return build()
    except ValidationError as error:
        raise PayloadError.from_validation(error) from None


def inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON Schema with its `$defs` references replaced by what they name."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [inlined(item, defs) for item in schema]
    return schema


def read_types_schema(title: str, description: str, *models: type[BaseModel]) -> dict[str, Any]:
    """The documented body of a route whose header names the event type: one of the models read (their
    `$defs` inlined), or any other JSON object (an event type answered 204)."""

    def of(model: type[BaseModel]) -> Any:
        schema = model.model_json_schema()
        return inlined(schema, schema.get("$defs", {}))

    return {"title": title, "description": description, "anyOf": [*map(of, models), {"type": "object"}]}
