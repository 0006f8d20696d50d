"""Every metric's contribution type, as the series stage reads them from one topic."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from incidentflow.domain.correlation import ChangeContribution
from incidentflow.domain.metrics import IncidentContribution

Contribution = Annotated[IncidentContribution | ChangeContribution, Field(discriminator="metric")]
"""One item's part in one series; `metric` names its type (see `metrics.SeriesContribution`)."""

CONTRIBUTION: TypeAdapter[IncidentContribution | ChangeContribution] = TypeAdapter(Contribution)
