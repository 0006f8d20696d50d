"""The lead time join: pushes and the change fold's requests, by repository -> the lead of every
deployment whose chain of pushes moved, to the change fold (`domain/lead.py` has the rule).

The pushes and requests of a repository are read from its table keys the first time in a consumer
generation and kept in memory (`Chains`), for the `KEPT` repositories used last; each input judges
again only the requests whose chain it can move. Past the state horizon (counted from the latest
push or deployment of the repository) pushes and requests are forgotten: what they were told stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from incidentflow.domain import lead as lt
from incidentflow.domain.base import from_json, json_of
from incidentflow.runtime.cache import Recent
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Context, PerRecord, Table, load, parse, store
from incidentflow.topics import Topics

KEPT = 256
"""At most this many repositories are kept in memory between records (the ones used last)."""

TABLES = {"lead-time": "per repository: its pushes, the lead time requests (with their last verdict) and counters"}


@dataclass
class LeadTime(PerRecord):
    """Runs for every push and lead time request of a repository: walks again the chains the input can
    move and sends the verdicts that moved to the change fold."""

    context: Context
    names: Topics
    tables: dict[str, Table]
    horizon_days: int = 90
    name: str = "lead-time"
    topics: tuple[str, ...] = ()
    chains: Recent[lt.Chains] = field(default_factory=lambda: Recent(KEPT))
    """The repositories read so far, while the consumer generation stays `kept_in`."""
    kept_in: int | None = None

    def __post_init__(self) -> None:
        self.topics = (self.names.lead,)
        self.table = self.tables["lead-time"]

    def begin(self) -> None:
        if self.kept_in != self.context.generation:
            self.chains.clear()
            self.kept_in = self.context.generation

    async def handle(self, message: Record) -> str:
        item = parse(message, lt.LeadInput, "a lead time input")
        repository = (message.key or b"").decode("utf-8", "replace")
        try:
            return await self.apply(message, repository, item)
        except Exception:
            self.chains.pop(repository)  # what it holds may be ahead of the table now: read it again
            raise

    async def apply(self, message: Record, repository: str, item: lt.LeadInput) -> str:
        chains = self.repository(repository)
        at: datetime | None
        if item.link is not None:
            link = item.link
            before = chains.links.get(link.after, {}).get(link.push_id)
            moved = chains.put_link(link)
            touched = [f"l|{link.after}|{link.push_id}"] if before != link else []
            at = link.at
        else:
            change_id = item.request.change_id if item.request is not None else item.change_id
            if change_id is None:
                return "duplicate"
            before_request = chains.requests.get(change_id)
            moved = chains.put_request(change_id, item.request)
            touched = [f"r|{change_id}"] if before_request != chains.requests.get(change_id) or moved else []
            at = item.request.changed_at if item.request is not None else None
        if not moved and not touched:
            if message.position > chains.meta.position:
                return "duplicate"  # a redelivery from upstream: its verdicts were sent when it first came
            # A replay after a crash (this input already changed the join): the verdicts it could have
            # moved are sent again, in case the crash lost them. The change fold keeps the newest.
            await self.replay(repository, chains, item)
            return "replayed"
        clock = chains.meta.clock if at is None or (chains.meta.clock is not None and chains.meta.clock >= at) else at
        chains.meta = chains.meta.model_copy(
            update={"seq": chains.meta.seq + (1 if moved else 0), "position": message.position, "clock": clock}
        )
        self.save(repository, chains, [*touched, *(f"r|{cid}" for cid in moved)])
        self.prune(repository, chains)
        for change_id, lead in moved.items():
            await self.tell(change_id, repository, chains.meta.seq, lead)
        return "applied"

    def repository(self, repository: str) -> lt.Chains:
        """The pushes and requests of `repository`, read from the table the first time in this generation."""
        found = self.chains.get(repository)
        if found is None:
            prefix = _key(repository, "")
            links = [from_json(lt.Link, v) for _, v in self.table.prefixed(f"{prefix}l|".encode())]
            filed = [from_json(lt.Filed, v) for _, v in self.table.prefixed(f"{prefix}r|".encode())]
            found = lt.Chains.of(links, filed, load(self.table, _key(repository, "m"), lt.Meta))
            self.chains.put(repository, found)
        return found

    def save(self, repository: str, chains: lt.Chains, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            kind, _, rest = key.partition("|")
            value: lt.Link | lt.Filed | None
            if kind == "l":
                after, _, push_id = rest.rpartition("|")
                value = chains.links.get(after, {}).get(push_id)
            else:
                request = chains.requests.get(rest)
                value = None if request is None else lt.Filed(request=request, told=chains.told.get(rest))
            store(self.table, _key(repository, key), value)
        store(self.table, _key(repository, "m"), chains.meta)

    def prune(self, repository: str, chains: lt.Chains) -> None:
        """Forgets what lies more than the horizon before the latest push or deployment, once a day."""
        clock = chains.meta.clock
        if clock is None:
            return
        before = clock - timedelta(days=self.horizon_days)
        if chains.meta.pruned is not None and before - chains.meta.pruned < timedelta(days=1):
            return
        links, requests = chains.prune(before)
        for link in links:
            store(self.table, _key(repository, f"l|{link.after}|{link.push_id}"), None)
        for change_id in requests:
            store(self.table, _key(repository, f"r|{change_id}"), None)
        chains.meta = chains.meta.model_copy(update={"pruned": before})
        store(self.table, _key(repository, "m"), chains.meta)

    async def replay(self, repository: str, chains: lt.Chains, item: lt.LeadInput) -> None:
        for change_id in chains.affected_by(item):
            lead = chains.told.get(change_id) if change_id in chains.requests else None
            await self.tell(change_id, repository, chains.meta.seq, lead)

    async def tell(self, change_id: str, repository: str, seq: int, lead: lt.Lead | None) -> None:
        verdict = lt.LeadVerdict(change_id=change_id, repository=repository, seq=seq, lead=lead)
        await self.context.send(self.names.lead_verdicts, change_id, json_of(verdict))


def _key(repository: str, rest: str) -> str:
    """A table key of a repository: its name, length-prefixed (a repository name may hold any character)."""
    return f"{len(repository)}:{repository}|{rest}"
