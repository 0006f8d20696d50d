"""Lead time from the pushes a deployment ships: a join of pushes and deployments per repository.

A push is a link of a chain: from the sha its ref pointed to before (`before`; none when it created the
ref) to the sha it points to after (`after`), with the commits it brought. A deployment of sha X in a
service and env ships the commits of the pushes on the chain that leads to X: the pushes whose `after`
is X, then those whose `after` is one of their `before`s, and so on, back to the sha of the previous
deployment of the same service and env (`until`, exclusive). Its `committed_at` is the earliest time of
those commits.

The chain is **complete** when every path back ends at `until` or at a push that created its ref;
without a previous deployment (the first of its service and env), it is as far back as the pushes
go. A chain that reaches a sha no push names yet is incomplete: the deployment counts among the
changes without a commit time until the push arrives. A rollback ships no new commit (no lead time).

What a deployment is told (`Lead`) is a function of the set of pushes and of its request alone
(`lead_of`), so pushes and deployments may arrive in any order, late or twice: each push judges
again the deployments whose chain reached its `after` (`Chains`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field

from incidentflow.domain.base import Value
from incidentflow.domain.events import Instant, PushEvent
from incidentflow.domain.history import newest

MAX_WALK = 5000
"""Most shas a chain is followed through; a longer one is incomplete."""


class Link(Value):
    """A push as the join keeps it."""

    push_id: str
    before: str | None = None
    after: str
    earliest: Instant | None = Field(default=None, description="The earliest time of its commits.")
    at: Instant = Field(description="Its latest commit's time (else when it was received): its age.")


def link_of(push: PushEvent) -> Link:
    times = [c.timestamp for c in push.commits]
    return Link(push_id=push.event_id, before=push.before, after=push.after, earliest=min(times, default=None),
                at=max(times, default=push.received_at))  # fmt: skip


class LeadRequest(Value):
    """A deployment asking for its lead time: it deployed `sha`; the previous deployment of its service
    and env deployed `until` (None: it is the first); `ships` false for a rollback."""

    change_id: str
    sha: str
    until: str | None = None
    ships: bool = True
    changed_at: Instant


class LeadInput(Value):
    """A record of the lead time topic, keyed by repository: a push, a deployment's request, or the
    withdrawal of one (`change_id` alone: the change no longer asks in this repository)."""

    link: Link | None = None
    request: LeadRequest | None = None
    change_id: str | None = None


class Lead(Value):
    """What the join says of a deployment: the earliest commit it ships, once its chain is complete."""

    committed_at: Instant | None = None
    complete: bool = False


class LeadVerdict(Value):
    """Lead time join -> change fold, keyed by change_id: the deployment's lead in one repository as of
    `seq` (the larger wins); `lead` null once the change no longer asks there."""

    change_id: str
    repository: str
    seq: int
    lead: Lead | None = None


class LeadFacts(Value):
    """What the change fold keeps of one repository's verdicts for a change: the newest by `seq`."""

    seq: int
    lead: Lead | None = None


joined_leads = newest
"""Per repository, the verdict with the larger sequence number."""


def walk(links: Mapping[str, Mapping[str, Link]], request: LeadRequest) -> tuple[Lead, set[str]]:
    """The deployment's lead from the links by `after`, and every sha its chain reached (found or not)."""
    if not request.ships:
        return Lead(complete=True), set()
    earliest: datetime | None = None
    complete = True
    reached: set[str] = set()
    stack = [request.sha]
    while stack:
        sha = stack.pop()
        if sha == request.until or sha in reached:
            continue
        if len(reached) >= MAX_WALK:
            complete = False
            break
        reached.add(sha)
        found = links.get(sha)
        if not found:
            complete = complete and request.until is None  # the first deployment: as far as the pushes go
            continue
        for link in found.values():
            if link.earliest is not None and (earliest is None or link.earliest < earliest):
                earliest = link.earliest
            if link.before is not None:
                stack.append(link.before)
    return Lead(committed_at=earliest if complete else None, complete=complete), reached


def lead_of(links: Iterable[Link], request: LeadRequest) -> Lead:
    """The deployment's lead from every push of its repository (the one-pass rule `Chains` keeps)."""
    by_after: dict[str, dict[str, Link]] = {}
    for link in links:
        by_after.setdefault(link.after, {})[link.push_id] = link
    return walk(by_after, request)[0]


class Meta(Value):
    """A repository's counters: the sequence number of its verdicts, and the input that last changed it."""

    seq: int = 0
    position: int = Field(default=-1, description="Position of the last input that changed the join.")
    clock: Instant | None = Field(default=None, description="The latest time of a push or request seen.")
    pruned: Instant | None = Field(default=None, description="What was older than this is forgotten.")


class Filed(Value):
    """A request as the join keeps it: what it asks, and what it was last told."""

    request: LeadRequest
    told: Lead | None = None


@dataclass
class Chains:
    """One repository's pushes and requests, in memory, with the shas each request's chain reached:
    a push judges again only the requests whose chain reached its `after`."""

    links: dict[str, dict[str, Link]] = field(default_factory=dict)
    requests: dict[str, LeadRequest] = field(default_factory=dict)
    told: dict[str, Lead] = field(default_factory=dict)
    reached: dict[str, set[str]] = field(default_factory=dict)
    watch: dict[str, set[str]] = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)

    @classmethod
    def of(cls, links: Iterable[Link], filed: Iterable[Filed], meta: Meta | None) -> Chains:
        chains = cls(meta=meta or Meta())
        for link in links:
            chains.links.setdefault(link.after, {})[link.push_id] = link
        for item in filed:
            chains.requests[item.request.change_id] = item.request
            if item.told is not None:
                chains.told[item.request.change_id] = item.told
            chains._watch(item.request.change_id)
        return chains

    def put_link(self, link: Link) -> dict[str, Lead | None]:
        """A push (the same push again changes nothing); the verdicts that moved."""
        known = self.links.get(link.after, {})
        if known.get(link.push_id) == link:
            return {}
        self.links.setdefault(link.after, {})[link.push_id] = link
        return self._judge(sorted(self.watch.get(link.after, ())))

    def put_request(self, change_id: str, request: LeadRequest | None) -> dict[str, Lead | None]:
        """The change asks this now (None: it no longer asks here); the verdicts that moved."""
        if self.requests.get(change_id) == request:
            return {}
        if request is None:
            self.requests.pop(change_id, None)
            self._unwatch(change_id)
            return {change_id: None} if self.told.pop(change_id, None) is not None else {}
        self.requests[change_id] = request
        return self._judge([change_id])

    def affected_by(self, item: LeadInput) -> list[str]:
        """The requests an input could judge again (on a replay their verdicts are sent again)."""
        if item.link is not None:
            return sorted(self.watch.get(item.link.after, ()))
        change_id = item.request.change_id if item.request is not None else item.change_id
        return [change_id] if change_id is not None else []

    def prune(self, before: datetime) -> tuple[list[Link], list[str]]:
        """Forgets pushes and requests older than `before`, judging nothing again: what was told stands."""
        gone_links = [link for found in self.links.values() for link in found.values() if link.at < before]
        for link in gone_links:
            found = self.links[link.after]
            del found[link.push_id]
            if not found:
                del self.links[link.after]
        gone = [cid for cid, request in self.requests.items() if request.changed_at < before]
        for change_id in gone:
            del self.requests[change_id]
            self.told.pop(change_id, None)
            self._unwatch(change_id)
        return gone_links, gone

    def _judge(self, change_ids: Iterable[str]) -> dict[str, Lead | None]:
        moved: dict[str, Lead | None] = {}
        for change_id in change_ids:
            self._unwatch(change_id)
            lead = self._watch(change_id)
            if self.told.get(change_id) != lead:
                self.told[change_id] = lead
                moved[change_id] = lead
        return moved

    def _watch(self, change_id: str) -> Lead:
        lead, reached = walk(self.links, self.requests[change_id])
        self.reached[change_id] = reached
        for sha in reached:
            self.watch.setdefault(sha, set()).add(change_id)
        return lead

    def _unwatch(self, change_id: str) -> None:
        for sha in self.reached.pop(change_id, ()):
            watchers = self.watch.get(sha)
            if watchers is not None:
                watchers.discard(change_id)
                if not watchers:
                    del self.watch[sha]
