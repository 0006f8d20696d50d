"""The raw envelope: the record of `incidentflow.raw`, from which everything downstream is rebuilt."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain.events import Labels, Severity, UtcDatetime


class RawEnvelope(BaseModel):
    """One accepted webhook, as the gateway received it.

    `body` is the request body exactly as sent (it is valid UTF-8, because it parsed as JSON), so
    the topic can be replayed through a newer adapter. The integration's static labels and default
    severity at receive time travel with it, and so does the label limit it was checked against, so a
    replay does not depend on today's config file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = 1
    request_id: str
    source: str
    integration: str
    received_at: UtcDatetime
    idempotency_key: str | None = Field(default=None, description="`webhook-id` or `Idempotency-Key` header.")
    labels: Labels = Field(default_factory=dict)
    default_severity: Severity | None = None
    max_labels: int | None = Field(default=None, description="Most labels per event when it was accepted.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="The request headers its source reads (lower case): CloudEvents' `ce-*` and `content-type`, "
        "GitHub's `x-github-event` and `x-github-delivery`, GitLab's `x-gitlab-event`.",
    )
    body: str
