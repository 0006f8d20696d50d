"""Deployment history: deployments and incidents by `service|env` -> rollbacks, rolled-back changes and rework.

Every decision is made in `domain.history`; the change fold (stream/changes.py) sends each change
that counts (and a leave when it stops counting there), the incident fold (stream/fold.py) the
episodes of the incidents of a batch (one record per history and batch), and this stage tells the
change fold what the history says of each change whose verdict moved. Each deployment and incident is stored under a key of its own, so an input
writes a few small values whatever the size of the history; the history itself is read once per
consumer generation and kept in memory (`Ledger`) while no other worker can write it, the `KEPT`
histories used last (another one is read again when it is used again). Its state is
bounded by the state horizon: deployments and resolved incidents more than the horizon before the
latest time the history has seen (a deployment, an incident's open or resolution) are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from incidentflow.domain import history as hist
from incidentflow.domain.base import from_json, json_of
from incidentflow.runtime.cache import Recent
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, PerRecord, Table, load, parse, store
from incidentflow.topics import Topics

KEPT = 256
"""At most this many histories are kept in memory between records (the ones used last)."""

TABLES = {"deployment-history": "per service|env: its deployments (with their last verdict), incidents and counters"}


@dataclass
class DeploymentHistory(PerRecord):
    """Runs for every deployment and incident of a service and env: judges again the deployments
    whose verdict it can move and sends the verdicts that moved to the change fold."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    horizon_days: int = 90
    name: str = "deployment-history"
    topics: tuple[str, ...] = ()
    ledgers: Recent[hist.Ledger] = field(default_factory=lambda: Recent(KEPT))
    """The histories read so far, while the consumer generation stays `kept_in`."""
    kept_in: int | None = None

    def __post_init__(self) -> None:
        self.topics = (self.names.history,)
        self.table = self.tables["deployment-history"]

    def begin(self) -> None:
        if self.kept_in != self.context.generation:
            self.ledgers.clear()
            self.kept_in = self.context.generation

    async def handle(self, message: Record) -> str:
        item = parse(message, hist.HistoryInput, "a deployment history input")
        series = (message.key or b"").decode("utf-8", "replace")
        try:
            return await self.apply(message, series, item)
        except Exception:
            self.ledgers.pop(series)  # what it holds may be ahead of the table now: read it again
            raise

    async def apply(self, message: Record, series: str, item: hist.HistoryInput) -> str:
        ledger = self.ledger(series)
        if item.incidents:
            moved, touched = {}, []
            for window in item.incidents:
                aggregate_id = window.aggregate_id
                before_incident = ledger.incidents.get(aggregate_id)
                moved.update(ledger.put_incident(window, item.member))  # a verdict moved twice: the last
                if before_incident is not ledger.incidents.get(aggregate_id):  # replaced or removed
                    touched.append(f"i|{aggregate_id}")
        else:
            change_id = item.deployment.change_id if item.deployment is not None else item.change_id
            if change_id is None:
                return "duplicate"
            before = ledger.items.get(change_id)
            moved = ledger.put(change_id, item.deployment if item.member else None)
            touched = [f"d|{change_id}"] if before != ledger.items.get(change_id) else []
        if not moved and not touched:
            if message.position > ledger.meta.position:
                return "duplicate"  # a redelivery from upstream: its verdicts were sent when it first came
            # A replay after a crash (this input already changed the history): the verdicts it could
            # have moved are sent again, in case the crash lost them. The change fold keeps the newest.
            await self.replay(series, ledger, item)
            return "replayed"
        at, clock = hist.latest_time(item), ledger.meta.clock
        ledger.meta = ledger.meta.model_copy(update={
            "seq": ledger.meta.seq + (1 if moved else 0), "position": message.position,
            "clock": clock if at is None or (clock is not None and clock >= at) else at,
        })  # fmt: skip
        self.save(series, ledger, [*touched, *(f"d|{cid}" for cid in moved)])
        self.prune(series, ledger)
        for change_id, derived in moved.items():
            await self.tell(change_id, series, ledger.meta.seq, derived)
        return "applied"

    def ledger(self, series: str) -> hist.Ledger:
        """The history of `series`, read from the table the first time in this generation."""
        found = self.ledgers.get(series)
        if found is None:
            prefix = _key(series, "")
            filed = [from_json(hist.Filed, v) for _, v in self.table.prefixed(f"{prefix}d|".encode())]
            incidents = [from_json(hist.Window, v) for _, v in self.table.prefixed(f"{prefix}i|".encode())]
            found = hist.Ledger.of(filed, incidents, load(self.table, _key(series, "m"), hist.Meta))
            self.ledgers.put(series, found)
        return found

    def save(self, series: str, ledger: hist.Ledger, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            kind, _, name = key.partition("|")
            value: hist.Filed | hist.Window | None
            if kind == "d":
                deployment = ledger.items.get(name)
                value = None if deployment is None else hist.Filed(deployment=deployment, told=ledger.told.get(name))
            else:
                value = ledger.incidents.get(name)
            store(self.table, _key(series, key), value)
        store(self.table, _key(series, "m"), ledger.meta)

    def prune(self, series: str, ledger: hist.Ledger) -> None:
        """Forgets deployments made more than the horizon before the latest time the history has
        seen (a deployment, an incident's open or resolution), and, once a day, incidents resolved
        before that: a service whose incidents come with no deployment forgets them too."""
        clock = ledger.meta.clock or (ledger.order[-1][0] if ledger.order else None)
        if clock is None:
            return
        before = clock - timedelta(days=self.horizon_days)
        if ledger.order and ledger.order[0][0] < before:
            for change_id in ledger.forget_deployments(before):
                store(self.table, _key(series, f"d|{change_id}"), None)
        pruned = ledger.meta.pruned
        if pruned is None or before - pruned >= timedelta(days=1):
            for aggregate_id in ledger.forget_incidents(before):
                store(self.table, _key(series, f"i|{aggregate_id}"), None)
            ledger.meta = ledger.meta.model_copy(update={"pruned": before})
            store(self.table, _key(series, "m"), ledger.meta)

    async def replay(self, series: str, ledger: hist.Ledger, item: hist.HistoryInput) -> None:
        if item.incidents:
            change_ids = list(dict.fromkeys(cid for window in item.incidents for cid in ledger.sensitive_to(window)))
        else:
            change_id = item.deployment.change_id if item.deployment is not None else item.change_id
            change_ids = sorted(ledger.around(change_id)) if change_id is not None else []
        for change_id in change_ids:
            told = ledger.told.get(change_id)
            if told is not None:
                await self.tell(change_id, series, ledger.meta.seq, told)
        if item.deployment is None and item.change_id is not None and item.change_id not in ledger.items:
            await self.tell(item.change_id, series, ledger.meta.seq, None)

    async def tell(self, change_id: str, series: str, seq: int, derived: hist.Derived | None) -> None:
        verdict = hist.HistoryVerdict(change_id=change_id, series=series, seq=seq, derived=derived)
        await self.context.send(self.names.history_verdicts, change_id, json_of(verdict))


def _key(series: str, rest: str) -> str:
    """A table key of a history: its series, length-prefixed (a label value may hold any character)."""
    return f"{len(series)}:{series}|{rest}"
