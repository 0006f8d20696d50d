"""What items contribute to the metric series: an incident to its time-to-restore series, a change
to its change and recovery series, each with a withdrawal from a series it left.

A new metric is a new contribution type here; the series stage (stream/series.py) stays as it is.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from incidentflow.domain.base import NO_SEVERITY, UNKNOWN, Value, env_of, series_key
from incidentflow.domain.change_fold import ChangeFacts, ChangeRecord
from incidentflow.domain.incident import Incident
from incidentflow.domain.metrics import ChangeMember, DayFigures, Member, RecoveryMember, Step, member_of
from incidentflow.domain.records import MetricRow


def series_of(incident: Incident) -> tuple[str, str, str]:
    """(service, env, peak severity) of an incident; `unknown` stands in for any that is absent."""
    return incident.labels.get("service") or UNKNOWN, env_of(incident.labels), incident.severity or UNKNOWN


class IncidentContribution(BaseModel):
    """One incident's part in one time-to-restore series: the member the series is to keep for it
    (`member.present=False` withdraws it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Literal["mttr"] = "mttr"
    service: str
    env: str
    severity: str
    aggregate_id: str
    member: Member

    @property
    def series(self) -> str:
        return series_key(self.metric, self.service, self.env, self.severity)

    @property
    def item(self) -> str:
        return self.aggregate_id

    def member_model(self) -> type[Member]:
        return Member

    def step(self, old: BaseModel | None) -> Step | None:
        """None when the contribution is stale (an older version) or changes nothing."""
        old, new = member_of(old, Member), self.member
        if (old is not None and old.version > new.version) or old == new:
            return None
        return Step(member=new, leaving=old.entry() if old is not None else None, entering=new.entry(),
                    open_delta=int(new.open) - int(old is not None and old.open))  # fmt: skip

    def row(self, day: date, figures: DayFigures) -> MetricRow:
        return MetricRow(metric="mttr", service=self.service, env=self.env, severity=self.severity, day=day.isoformat(),
                         count=figures.count, sum_seconds=figures.sum_microseconds / 1e6,
                         max_seconds=figures.max_seconds, sketch=figures.sketch)  # fmt: skip


def _view(incident: Incident) -> tuple[object, ...]:
    return (*series_of(incident), incident.status, incident.resolved_at, incident.time_to_restore_seconds)


def contributions(before: Incident | None, after: Incident) -> list[IncidentContribution]:
    """Runs after every change of an incident: its contribution now, and a withdrawal if it moved series.

    A change that leaves the metric view as it was (a heartbeat, a new title) contributes nothing.
    """
    if before is not None and _view(before) == _view(after):
        return []
    service, env, severity = series_of(after)
    member = Member(version=after.version, present=True, status=after.status, resolved_at=after.resolved_at,
                    time_to_restore_seconds=after.time_to_restore_seconds)  # fmt: skip
    result = [IncidentContribution(service=service, env=env, severity=severity, aggregate_id=after.aggregate_id,
                                   member=member)]  # fmt: skip
    if before is not None and series_of(before) != (service, env, severity):
        old_service, old_env, old_severity = series_of(before)
        result.append(IncidentContribution(service=old_service, env=old_env, severity=old_severity,
                                           aggregate_id=after.aggregate_id,
                                           member=Member(version=after.version, present=False)))  # fmt: skip
    return result


class ChangeContribution(Value):
    """The facts of one change, for the change series of (`service`, `env`) (its own now, or a former one),
    or (`metric` `recovery`) for its failed deployment recovery series."""

    metric: Literal["changes", "recovery"] = "changes"
    service: str
    env: str
    facts: ChangeFacts

    @property
    def severity(self) -> str:
        return NO_SEVERITY

    @property
    def series(self) -> str:
        return series_key(self.metric, self.service, self.env, NO_SEVERITY)

    @property
    def item(self) -> str:
        return self.facts.change.change_id

    def member_model(self) -> type[ChangeFacts]:
        return ChangeFacts

    def step(self, old: BaseModel | None) -> Step | None:
        """The series keeps the join of every copy of the facts: copies may come in any order and
        any number of times. None when the join adds nothing."""
        known = member_of(old, ChangeFacts)
        facts = self.facts if known is None else known.join(self.facts)
        if facts == known:
            return None
        before = self.member_for(known) if known is not None else None
        after = self.member_for(facts)
        if before == after:
            return Step(member=facts, leaving=None, entering=None)
        return Step(member=facts, leaving=before.entry() if before is not None else None, entering=after.entry())

    def member_for(self, facts: ChangeFacts) -> ChangeMember | RecoveryMember:
        """Where these facts put the change in this contribution's series."""
        if self.metric == "recovery":
            return facts.recovery(self.service, self.env)
        return facts.member(self.service, self.env)

    def row(self, day: date, figures: DayFigures) -> MetricRow:
        if self.metric == "recovery":
            return MetricRow(metric="recovery", service=self.service, env=self.env, severity=NO_SEVERITY,
                             day=day.isoformat(), count=figures.count, sum_seconds=figures.sum_microseconds / 1e6,
                             max_seconds=figures.max_seconds, sketch=figures.sketch)  # fmt: skip
        return MetricRow(metric="changes", service=self.service, env=self.env, severity=NO_SEVERITY, day=day.isoformat(),
                         changes=figures.count, failed_changes=figures.failed, reworked_changes=figures.reworked,
                         rollbacks=figures.rollbacks, lead_times=sum(figures.sketch.values()),
                         sum_seconds=figures.sum_microseconds / 1e6, max_seconds=figures.max_seconds,
                         sketch=figures.sketch)  # fmt: skip


def change_contributions(record: ChangeRecord) -> tuple[ChangeRecord, list[ChangeContribution]]:
    """The facts for the change's (service, env) series and for every former one (which then drop it).

    A change that never counted (only `planned` so far) has nothing to contribute yet.
    """
    facts = record.facts
    if facts is None or (not facts.change.counted and not record.series):
        return record, []
    series = tuple(sorted({*record.series, (facts.change.service, facts.change.env)}))
    # Only a change that ever correlated or was rolled back can have recovered: the others have no recovery
    # series to move.
    ever_failed = bool(facts.verdicts) or facts.ever_rolled_back
    metrics: tuple[Literal["changes", "recovery"], ...] = ("changes", "recovery") if ever_failed else ("changes",)
    return record.model_copy(update={"series": series}), [
        ChangeContribution(metric=metric, service=service, env=env, facts=facts)
        for service, env in series
        for metric in metrics
    ]
