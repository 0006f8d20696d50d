"""Every metric's contribution type, as the series stage reads them from one topic, and the closing of an item."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from incidentflow.domain.base import NO_SEVERITY, UNKNOWN, series_key
from incidentflow.domain.change_fold import ChangeFacts, ChangeRecord
from incidentflow.domain.contributions import ChangeContribution, IncidentContribution, series_of
from incidentflow.domain.events import Severity
from incidentflow.domain.incident import Incident
from incidentflow.domain.metrics import DayEntry, Member, member_of


class Closed(BaseModel):
    """An item past the state horizon, for one series it may be in: the series forgets the item's
    member and its entry there; the day's figures keep it (docs/semantics.md, "The state horizon")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Literal["closed"] = "closed"
    of: Literal["mttr", "changes", "recovery"]
    service: str
    env: str
    severity: str = NO_SEVERITY
    item: str

    @property
    def series(self) -> str:
        return series_key(self.of, self.service, self.env, self.severity)

    def member_model(self) -> type[BaseModel]:
        return Member if self.of == "mttr" else ChangeFacts

    def entry(self, member: BaseModel) -> DayEntry | None:
        """(day, entry) the item's member files in the series (None: it has none there)."""
        if self.of == "mttr":
            found = member_of(member, Member)
            return found.entry() if found is not None else None
        facts = member_of(member, ChangeFacts)
        if facts is None:
            return None
        return (
            ChangeContribution(metric=self.of, service=self.service, env=self.env, facts=facts)
            .member_for(facts)
            .entry()
        )


def closing_incident(incident: Incident) -> list[Closed]:
    """The series an incident past its horizon may be in: every severity of its service and env
    (its peak severity may have moved it between them while it was open)."""
    service, env, _ = series_of(incident)
    return [Closed(of="mttr", service=service, env=env, severity=severity, item=incident.aggregate_id)
            for severity in (*get_args(Severity), UNKNOWN)]  # fmt: skip


def closing_change(record: ChangeRecord) -> list[Closed]:
    """The series a change past its horizon was sent to (`change_contributions`)."""
    if record.facts is None:
        return []
    metrics: tuple[Literal["changes", "recovery"], ...] = (
        ("changes", "recovery") if record.facts.verdicts else ("changes",)
    )
    return [Closed(of=metric, service=service, env=env, item=record.facts.change.change_id)
            for service, env in record.series for metric in metrics]  # fmt: skip


Contribution = Annotated[IncidentContribution | ChangeContribution | Closed, Field(discriminator="metric")]
"""One item's part in one series; `metric` names its type (see `metrics.SeriesContribution`)."""

CONTRIBUTION: TypeAdapter[IncidentContribution | ChangeContribution | Closed] = TypeAdapter(Contribution)
