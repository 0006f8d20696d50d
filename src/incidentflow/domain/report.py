"""`incidentflow report`: the DORA keys of each service and env over a range of days, summed from the
daily rows of the metrics topic, with their DORA performance levels (`domain/dora.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain import dora, sketch
from incidentflow.domain.records import MetricRow


class ServiceReport(BaseModel):
    """What `incidentflow report` prints for one service and environment over a range of days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    env: str
    incidents: int = Field(description="Incidents finally resolved in the range.")
    mttr_seconds: float | None = Field(description="Mean time to restore of those incidents.")
    median_seconds: float | None = Field(default=None, description="Median time to restore, within 1%.")
    p90_seconds: float | None = Field(default=None, description="90th percentile of the time to restore, within 1%.")
    max_seconds: float | None = Field(description="Longest time to restore among them.")
    changes: int
    deployments_per_day: float = Field(default=0.0, description="Changes divided by the days of the range.")
    failed_changes: int = Field(description="Changes with a live correlation to an incident, or undone by a rollback.")
    change_failure_rate: float | None
    reworked_changes: int = Field(
        default=0, description="Rollbacks, hotfixes and reverts, and changes deployed while an incident was open."
    )
    rework_rate: float | None = Field(default=None, description="Deployment rework rate: reworked / all changes.")
    rollbacks: int = Field(default=0, description="Changes that were rollbacks (by kind, or by version).")
    lead_times: int = Field(default=0, description="Changes with a commit time, whose lead times are summarized.")
    lead_time_mean_seconds: float | None = None
    lead_time_median_seconds: float | None = None
    lead_time_p90_seconds: float | None = None
    lead_time_max_seconds: float | None = None
    recoveries: int = Field(
        default=0, description="Failed changes that recovered in the range (by the day they recovered)."
    )
    recovery_mean_seconds: float | None = Field(default=None, description="Mean failed deployment recovery time.")
    recovery_median_seconds: float | None = None
    recovery_p90_seconds: float | None = None
    recovery_max_seconds: float | None = None
    deployment_frequency_level: dora.Level | None = Field(
        default=None, description="DORA performance level of each key (domain/dora.py); null without figures."
    )
    lead_time_level: dora.Level | None = None
    change_failure_rate_level: dora.Level | None = None
    time_to_restore_level: dora.Level | None = None
    recovery_level: dora.Level | None = None
    benchmark: dora.Benchmark = Field(default=dora.DEFAULT, description="The report whose clusters give the levels.")


@dataclass
class _Durations:
    """Count, sum, longest and sketch of one kind of duration, summed over rows."""

    count: int = 0
    sum_seconds: float = 0.0
    max_seconds: float = 0.0
    sketches: list[Mapping[int, int]] = field(default_factory=list)

    def add(self, count: int, sum_seconds: float, max_seconds: float, buckets: Mapping[int, int]) -> None:
        self.count += count
        self.sum_seconds += sum_seconds
        if count:
            self.max_seconds = max(self.max_seconds, max_seconds)
        self.sketches.append(buckets)

    def summary(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(mean, median, p90, max); None without any."""
        if not self.count:
            return None, None, None, None
        merged = sketch.merged(self.sketches)

        def at(q: float) -> float | None:  # a bucket's value may lie above the exact longest: never shown so
            found = sketch.quantile(merged, q)
            return None if found is None else min(found, self.max_seconds)

        return self.sum_seconds / self.count, at(0.5), at(0.9), self.max_seconds


@dataclass
class _Sums:
    restores: _Durations = field(default_factory=_Durations)
    leads: _Durations = field(default_factory=_Durations)
    recoveries: _Durations = field(default_factory=_Durations)
    changes: int = 0
    failed: int = 0
    reworked: int = 0
    rollbacks: int = 0


def report(rows: Iterable[MetricRow], first: date, last: date, service: str | None = None,
           env: str | None = None, benchmark: dora.Benchmark = dora.DEFAULT) -> list[ServiceReport]:  # fmt: skip
    """Sums daily rows per service and env for days in [first, last]; the rows of `incidentflow.metrics`
    are additive (their sketches too), so this is exact, the quantiles within the sketch's 1%."""
    sums: dict[tuple[str, str], _Sums] = {}
    for row in rows:
        day = date.fromisoformat(row.day)
        if not first <= day <= last or service not in (None, row.service) or env not in (None, row.env):
            continue
        acc = sums.setdefault((row.service, row.env), _Sums())
        if row.metric == "mttr":
            acc.restores.add(row.count, row.sum_seconds, row.max_seconds, row.sketch)
        elif row.metric == "recovery":
            acc.recoveries.add(row.count, row.sum_seconds, row.max_seconds, row.sketch)
        else:
            acc.changes += row.changes
            acc.failed += row.failed_changes
            acc.reworked += row.reworked_changes
            acc.rollbacks += row.rollbacks
            acc.leads.add(row.lead_times, row.sum_seconds, row.max_seconds, row.sketch)
    days = (last - first).days + 1
    reports = []
    for (name, environment), acc in sorted(sums.items()):
        if not (acc.restores.count or acc.changes or acc.recoveries.count):
            continue
        mttr, median, p90, longest = acc.restores.summary()
        lead_mean, lead_median, lead_p90, lead_max = acc.leads.summary()
        recovery_mean, recovery_median, recovery_p90, recovery_max = acc.recoveries.summary()
        reports.append(ServiceReport(
            service=name, env=environment, incidents=acc.restores.count, mttr_seconds=mttr, median_seconds=median,
            p90_seconds=p90, max_seconds=longest, changes=acc.changes, failed_changes=acc.failed,
            change_failure_rate=acc.failed / acc.changes if acc.changes else None,
            reworked_changes=acc.reworked, rework_rate=acc.reworked / acc.changes if acc.changes else None,
            rollbacks=acc.rollbacks, deployments_per_day=acc.changes / days, lead_times=acc.leads.count, lead_time_mean_seconds=lead_mean,
            lead_time_median_seconds=lead_median, lead_time_p90_seconds=lead_p90, lead_time_max_seconds=lead_max,
            recoveries=acc.recoveries.count, recovery_mean_seconds=recovery_mean,
            recovery_median_seconds=recovery_median, recovery_p90_seconds=recovery_p90,
            recovery_max_seconds=recovery_max,
            deployment_frequency_level=dora.deployment_frequency(acc.changes / days, benchmark),
            lead_time_level=dora.lead_time(lead_median, benchmark),
            change_failure_rate_level=dora.change_failure_rate(acc.failed / acc.changes if acc.changes else None,
                                                               benchmark),
            time_to_restore_level=dora.recovery_time(median, benchmark),
            recovery_level=dora.recovery_time(recovery_median, benchmark), benchmark=benchmark,
        ))  # fmt: skip
    return reports
