"""Canonical alert and change events: the records of `incidentflow.alerts` and `incidentflow.changes`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    model_validator,
)
from pydantic_core import CoreSchema, TzInfo, core_schema

Severity = Literal["critical", "high", "moderate", "low", "informational"]
AlertAction = Literal["open", "resolve", "reopen", "heartbeat"]
ChangeStatus = Literal["planned", "ready", "processing", "canceled", "done"]
ChangeKind = Literal["deployment", "rollback", "hotfix", "revert"]
"""What a change is: an ordinary deployment, or one of the unplanned kinds that count as rework."""
CHANGE_KINDS: tuple[ChangeKind, ...] = ("deployment", "rollback", "hotfix", "revert")

SEVERITY_RANK: dict[str, int] = {
    "informational": 0,
    "low": 1,
    "moderate": 2,
    "high": 3,
    "critical": 4,
}


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC or (type(value.tzinfo) is TzInfo and not value.utcoffset()):
        return value  # UTC for good: `Z` read from JSON keeps the zone object of every instant read (`Instant`)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware instant, normalised to UTC; serialised as RFC 3339 with `Z`. For what producers
write (the canonical events), whose instants may carry any offset."""


class _OffsetZero:
    """A datetime whose UTC offset is zero, checked by the validator itself."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.datetime_schema(tz_constraint=0)


Instant = Annotated[datetime, _OffsetZero]
"""An instant in UTC (offset zero, else invalid); serialised as RFC 3339 with `Z`. For what the
worker derives from canonical events (incidents and their state, changes, correlation sides,
metric, history and lead records): they are in UTC already, so reading them back checks the
offset and converts nothing, without the Python call per instant `UtcDatetime` costs."""

Key = Annotated[str, Field(min_length=1, max_length=512)]
Labels = dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=2048)]]


def peak(a: Severity | None, b: Severity | None) -> Severity | None:
    """The higher of two severities; None counts as lower than any severity."""
    if a is None:
        return b
    if b is None:
        return a
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def content_id(*parts: object) -> str:
    """A stable id from JSON-serialisable parts: the same parts always give the same id."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=65536)


class AlertEvent(_Record):
    """Something a monitoring or incident tool said about one incident (one aggregate)."""

    event_id: Key
    aggregate_id: Key
    integration: Key
    source: Key
    external_aggregate_key: Key
    action: AlertAction
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    severity: Severity | None = None
    title: str | None = None
    description: str | None = None
    url: str | None = None
    labels: Labels = Field(default_factory=dict)
    request_id: str | None = None

    @model_validator(mode="after")
    def _aggregate_id_is_integration_and_key(self) -> AlertEvent:
        expected = aggregate_id(self.integration, self.external_aggregate_key)
        if self.aggregate_id != expected:
            raise ValueError(f"aggregate_id must be '<integration>:<external_aggregate_key>' ({expected!r})")
        return self

    @property
    def order_key(self) -> tuple[datetime, str]:
        """Events of an aggregate apply in this order: event time, then event id."""
        return (self.occurred_at, self.event_id)


class ChangeEvent(_Record):
    """A deploy or configuration change reported by a change source."""

    event_id: Key
    change_id: Key
    integration: Key
    source: Key
    status: ChangeStatus
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    title: str | None = None
    description: str | None = None
    url: str | None = None
    labels: Labels = Field(default_factory=dict)
    request_id: str | None = None
    committed_at: UtcDatetime | None = Field(
        default=None, description="The earliest commit the change ships, for its lead time (change time - this)."
    )
    kind: ChangeKind = Field(
        default="deployment",
        description="`rollback`, `hotfix` and `revert` are unplanned deployments (rework); a rollback also marks "
        "the change it undoes as failed.",
    )
    version: str | None = Field(
        default=None,
        max_length=512,
        description="What was deployed (a sha, an artifact version): a change that deploys again a version its "
        "service and env ran before, with another one in between, is a rollback.",
    )

    @model_validator(mode="after")
    def _change_id_is_integration_and_key(self) -> ChangeEvent:
        if not self.change_id.startswith(f"{self.integration}:") or self.change_id == f"{self.integration}:":
            raise ValueError("change_id must be '<integration>:<change_key>'")
        return self


class Commit(_Record):
    """A commit a push brought: its sha and its time."""

    id: Key
    timestamp: UtcDatetime


class PushEvent(_Record):
    """A push to a repository (GitHub, GitLab), or a merged change (CDEvents): a link of the chain of
    pushes that leads to a deployed sha, with the commits it brought. Internal: it goes to the
    lead time join (`<namespace>.lead-time`), keyed by repository, not to a canonical topic."""

    event_id: Key
    integration: Key
    source: Key
    repository: Key = Field(description="Where the shas live: the join's key (a deployment names the same).")
    ref: str | None = None
    before: str | None = Field(
        default=None,
        max_length=512,
        description="The sha the ref pointed to before; null when the push starts a chain.",
    )
    after: Key = Field(description="The sha the ref points to after the push.")
    commits: list[Commit] = Field(default_factory=list, max_length=10000)
    received_at: UtcDatetime
    request_id: str | None = None

    @property
    def earliest(self) -> datetime | None:
        return min((c.timestamp for c in self.commits), default=None)


def aggregate_id(integration: str, external_aggregate_key: str) -> str:
    """The identity of an incident: two integrations never share one."""
    return f"{integration}:{external_aggregate_key}"


def change_id(integration: str, change_key: str) -> str:
    """The identity of a change: two integrations never share one."""
    return f"{integration}:{change_key}"


CanonicalEvent = AlertEvent | ChangeEvent
