"""The remaining topic records: metric rows, correlations and dead letters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain.events import Instant


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricRow(_Record):
    """One day of one metric series on `incidentflow.metrics`, key `<metric>|<service>|<env>|<severity>|<day>`.

    Every figure is additive (max aside, which combines with max), so any range of days and the
    rows of any set of workers can be summed.
    """

    metric: Literal["mttr", "changes", "recovery"] = Field(
        description="`mttr`: incidents by the day of their final resolution; `changes`: changes by the day of "
        "their change time; `recovery`: failed changes by the day they recovered (the last of their live "
        "correlated incidents resolved), their failed deployment recovery times in `count`, `sum_seconds`, "
        "`max_seconds` and `sketch`."
    )
    service: str
    env: str = Field(description="The `env`, `environment` or `deployment.environment.name` label, else `unknown`.")
    severity: str = Field(description="Peak severity of the incidents; `-` for change rows.")
    day: str = Field(description="UTC day of the event time (final resolution, or change time), YYYY-MM-DD.")
    count: int = Field(
        default=0, description="Incidents finally resolved that day; on a recovery row, failed changes that recovered."
    )
    sum_seconds: float = Field(
        default=0.0, description="Sum of their time to restore; on a change row, the sum of the lead times."
    )
    max_seconds: float = Field(
        default=0.0, description="Longest of their time to restore; on a change row, the longest lead time."
    )
    sketch: dict[int, int] = Field(
        default_factory=dict,
        description="The durations (time to restore; on a change row, lead time) as a quantile sketch: how many fall in each log bucket. "
        "Bucket i >= 0 holds durations of d microseconds with ceil(log(d) / log(g)) = i, g = 1.01 / 0.99 (DDSketch's "
        "mapping with 1% relative accuracy), represented by 2 g^i / (g + 1) microseconds; bucket -1 holds zero. "
        "Additive like `count`: sum the buckets of any rows, then walk them to a rank for any quantile.",
    )
    changes: int = Field(default=0, description="Changes whose change time fell that day.")
    failed_changes: int = Field(
        default=0, description="Of those, changes with at least one live correlation, or that a rollback undid."
    )
    reworked_changes: int = Field(
        default=0,
        description="Of those, rework: rollbacks, hotfixes and reverts, and changes deployed while an incident of "
        "the same service and env was open (deployment rework rate = reworked_changes / changes).",
    )
    rollbacks: int = Field(default=0, description="Of those, rollbacks (by their kind or the version they deployed).")
    lead_times: int = Field(
        default=0,
        description="Of those, changes with a commit time (`committed_at`): their lead times are in "
        "`sum_seconds`, `max_seconds` and `sketch`; the others are counted apart, never as zero.",
    )

    @property
    def key(self) -> str:
        return f"{self.metric}|{self.service}|{self.env}|{self.severity}|{self.day}"


class Correlation(_Record):
    """A change suspected of causing an incident, on `incidentflow.correlations`, key `aggregate_id`."""

    correlation_id: str = Field(description="Stable hash of the (aggregate_id, change_id) pair.")
    aggregate_id: str
    change_id: str
    incident_opened_at: Instant
    change_occurred_at: Instant
    delta_seconds: float = Field(description="incident_opened_at - change_occurred_at.")
    matched_labels: dict[str, str]
    score: float = Field(ge=0, le=1)
    rank: int = Field(ge=1, description="1 = prime suspect among the incident's live correlations.")
    retracted: bool = False


class DeadLetterRecord(_Record):
    """A record that could not be handled, on `incidentflow.deadletter`: never dropped silently."""

    reason: str
    kind: Literal["invalid", "error"] = Field(
        description="`invalid`: can never be handled; `error`: unexpected failure."
    )
    topic: str
    partition: int
    offset: int
    item: int | None = Field(
        default=None,
        description="Index of the item within a packed record of an internal topic (`key` and `value` are the item's); "
        "null for a whole record.",
    )
    timestamp: int | None = Field(default=None, description="Kafka timestamp of the original record (ms).")
    dead_lettered_at: Instant
    key: str | None = None
    key_base64: str | None = None
    value: str | None = Field(default=None, description="The original value, when it is UTF-8.")
    value_base64: str | None = Field(default=None, description="The original value otherwise.")
