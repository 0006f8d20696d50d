"""Deployment history: deployments and incidents by `service|env` -> rollbacks, rolled-back changes and rework.

Every decision is made in `domain.history`; the change fold (stream/changes.py) sends each change
that counts (and a leave when it stops counting there), the incident fold (stream/fold.py) each
incident's episodes, and this stage tells the change fold what the history says of each change
whose verdict moved. Its state is bounded by the state horizon: deployments and resolved incidents
more than the horizon before the latest deployment of the service and env are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from incidentflow.domain import history as hist
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, PerRecord, Table, load, parse, store
from incidentflow.topics import Topics

TABLES = {"deployment-history": "History JSON by service|env"}


@dataclass
class DeploymentHistory(PerRecord):
    """Runs for every deployment and incident of a service and env: derives its history again and
    sends the verdicts that moved to the change fold."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    horizon_days: int = 90
    name: str = "deployment-history"
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.topics = (self.names.history,)
        self.histories = self.tables["deployment-history"]

    async def handle(self, message: Record) -> str:
        item = parse(message, hist.HistoryInput, "a deployment history input")
        series = (message.key or b"").decode("utf-8", "replace")
        state = load(self.histories, series, hist.History) or hist.History()
        settled, moved = hist.settle(hist.with_input(state, item))
        if settled == state:
            if message.position > state.position:
                return "duplicate"  # a redelivery from upstream: its verdicts were sent when it first came
            # A replay after a crash (this input already changed the state): every verdict is sent
            # again, in case the crash lost them after the state was saved. The change fold keeps the newest.
            for change_id, told in state.told.items():
                await self.tell(change_id, series, state.seq, told)
            return "replayed"
        latest = max((d.changed_at for d in settled.deployments.values()), default=None)
        if latest is not None:
            settled = hist.pruned(settled, latest - timedelta(days=self.horizon_days))
        store(self.histories, series, settled.model_copy(update={"position": message.position}))
        for change_id, derived in moved.items():
            await self.tell(change_id, series, settled.seq, derived)
        return "applied"

    async def tell(self, change_id: str, series: str, seq: int, derived: hist.Derived | None) -> None:
        verdict = hist.HistoryVerdict(change_id=change_id, series=series, seq=seq, derived=derived)
        await self.context.send(self.names.history_verdicts, change_id, verdict.model_dump_json())
