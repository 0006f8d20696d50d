"""Deployment history per service and env: rollbacks, the changes they undo, and rework.

A service and env's history is the set of its deployments (counted changes: change time, kind,
version) and of its incidents' episodes. What it says of each deployment (`Derived`) is a function
of that set alone (`derive`), so deployments and incidents may arrive in any order, late or twice:
each input judges again the deployments whose verdict it can move (`Ledger`), and every one whose
verdict moved is told again, with a sequence number that only grows (`HistoryVerdict.seq`), so
the change fold keeps the newest.

- A deployment is a **rollback** when its kind says so, or when it deploys a version that an
  earlier deployment of the same service and env deployed while the deployment just before it (of
  those that name a version) deployed another one.
- A rollback **undoes** the deployment just before it: that one is a failed change, rolled back at
  the rollback's change time.
- A deployment is **rework** when it is a rollback, a hotfix or a revert, or when it was deployed
  while an incident of the same service and env was open: after an episode opened and no later than
  it was resolved (a fix forward).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from pydantic import Field

from incidentflow.domain.base import UNKNOWN, Value, env_of
from incidentflow.domain.events import ChangeKind, Instant
from incidentflow.domain.incident import Episode, Incident

UNPLANNED: tuple[ChangeKind, ...] = ("rollback", "hotfix", "revert")
"""Kinds of change that are rework by themselves."""


class Deployment(Value):
    """What the history needs of a counted change."""

    change_id: str
    changed_at: Instant
    kind: ChangeKind = "deployment"
    version: str | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.changed_at, self.change_id)


def holds(episode: Episode, at: datetime) -> bool:
    """Whether a deployment at `at` was made while the episode was open: after it opened, no later than its resolution."""
    return episode.opened_at < at and (episode.resolved_at is None or at <= episode.resolved_at)


class Window(Value):
    """An incident of the service and env: its episodes (as the incident lists them), as of its
    version (the newer version wins)."""

    aggregate_id: str
    version: int
    episodes: tuple[Episode, ...]


class HistoryInput(Value):
    """A record of the deployment history topic, keyed `service|env`: a deployment, or incidents
    (those of one batch of the incident fold), that belong to the service and env (`member`), or
    that left it (moved, or no longer counted)."""

    deployment: Deployment | None = None
    change_id: str | None = Field(default=None, description="The change that left (with `member` false).")
    incidents: tuple[Window, ...] = ()
    member: bool = True


class Derived(Value):
    """What the history says of one deployment."""

    rollback: bool = False
    rework: bool = False
    rolled_back_at: Instant | None = Field(default=None, description="When the rollback that undoes it was made.")
    rolled_back_by: str | None = None
    previous: str | None = Field(
        default=None,
        description="For a deployment with a version: the version of the last deployment before it that named one "
        "(where the chain of pushes it ships starts).",
    )


class HistoryVerdict(Value):
    """History -> change fold, keyed by change_id: the deployment's verdict in one service and env's
    history as of `seq` (the larger wins); `derived` null once it is no longer in that history."""

    change_id: str
    series: str = Field(description="`service|env` of the history.")
    seq: int
    derived: Derived | None = None


def series_of(service: str, env: str) -> str:
    return f"{service}|{env}"


def history_of(incident: Incident) -> str:
    """The history (`service|env`) an incident belongs to."""
    return series_of(incident.labels.get("service") or UNKNOWN, env_of(incident.labels))


def window_of(incident: Incident) -> Window:
    """The incident's episodes as its history keeps them."""
    return Window(aggregate_id=incident.aggregate_id, version=incident.version, episodes=incident.episodes)


def derive(deployments: Iterable[Deployment], incidents: Iterable[Window]) -> dict[str, Derived]:
    """The verdict of every deployment of one service and env's history."""
    ordered = sorted(deployments, key=lambda d: d.order)
    episodes = [episode for window in incidents for episode in window.episodes]
    seen_versions: set[str] = set()
    last_version: str | None = None
    rolled_back: dict[str, tuple[datetime, str]] = {}
    own: list[tuple[Deployment, bool, str | None]] = []
    for index, deployment in enumerate(ordered):
        version = deployment.version
        by_version = (
            version is not None and last_version is not None and version != last_version and version in seen_versions
        )
        rollback = deployment.kind == "rollback" or by_version
        if rollback and index > 0:
            rolled_back[ordered[index - 1].change_id] = (deployment.changed_at, deployment.change_id)
        own.append((deployment, rollback, last_version if version is not None else None))
        if version is not None:
            seen_versions.add(version)
            last_version = version
    result = {}
    for deployment, rollback, previous in own:
        at = deployment.changed_at
        rework = rollback or deployment.kind in UNPLANNED or any(holds(e, at) for e in episodes)
        undone = rolled_back.get(deployment.change_id)
        result[deployment.change_id] = Derived(
            rollback=rollback,
            rework=rework,
            rolled_back_at=undone[0] if undone else None,
            rolled_back_by=undone[1] if undone else None,
            previous=previous,
        )
    return result


class Meta(Value):
    """A history's counters: the sequence number of its verdicts, the input that last changed it,
    and its clock for the state horizon."""

    seq: int = 0
    position: int = Field(default=-1, description="Position of the last input that changed the history.")
    clock: Instant | None = Field(
        default=None, description="The latest time seen: a deployment's change time, an episode's open or resolution."
    )
    pruned: Instant | None = Field(default=None, description="Resolved incidents older than this are forgotten.")


def latest_time(item: HistoryInput) -> datetime | None:
    """The latest time an input of the history names (what moves its clock)."""
    if item.deployment is not None:
        return item.deployment.changed_at
    times = [t for w in item.incidents for e in w.episodes for t in (e.opened_at, e.resolved_at) if t is not None]
    return max(times, default=None)


class Filed(Value):
    """A deployment as its history keeps it: what it is, and what it was last told."""

    deployment: Deployment
    told: Derived | None = None


@dataclass
class Ledger:
    """One service and env's history, in memory: deployments in order, the versions they deployed,
    incidents, and per deployment how many incidents were open when it was made.

    Each change judges again only the deployments whose verdict it can move (`derive` is the same
    rule over the whole history in one pass, and the tests hold the two equal): the one changed, the
    ones just before and after it (which it may now undo or follow), the first one with a version
    after it (whose previous version changed), and the first two of its version (one of which may
    now have, or no longer have, an earlier deployment of that version), with the one before each;
    for an incident, the deployments made while it is or was open whose count of open incidents
    went to or from zero.
    """

    items: dict[str, Deployment] = field(default_factory=dict)
    order: list[tuple[datetime, str]] = field(default_factory=list)
    versions: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    incidents: dict[str, Window] = field(default_factory=dict)
    cover: dict[str, int] = field(default_factory=dict)
    told: dict[str, Derived] = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)

    @classmethod
    def of(cls, filed: Iterable[Filed], incidents: Iterable[Window], meta: Meta | None) -> Ledger:
        """A ledger from what its history stored."""
        ledger = cls(meta=meta or Meta())
        ledger.incidents = {w.aggregate_id: w for w in incidents}
        for item in filed:
            ledger._insert(item.deployment)
            if item.told is not None:
                ledger.told[item.deployment.change_id] = item.told
        return ledger

    # -- changes -----------------------------------------------------------------------------------

    def put(self, change_id: str, deployment: Deployment | None) -> dict[str, Derived | None]:
        """The change is this deployment now (None: no longer in this history); the verdicts that moved."""
        old = self.items.get(change_id)
        if old == deployment:
            return {}
        candidates = self._around(old) if old is not None else set()
        if old is not None:
            self._remove(old)
        if deployment is not None:
            self._insert(deployment)
            candidates |= self._around(deployment)
        moved = self._judge(candidates)
        if deployment is None and change_id in self.told:
            del self.told[change_id]
            moved[change_id] = None
        return moved

    def put_incident(self, window: Window, member: bool) -> dict[str, Derived | None]:
        """The incident's episodes now (`member` false: it left this history); the verdicts that moved."""
        old = self.incidents.get(window.aggregate_id)
        if old is not None and window.version < old.version:
            return {}
        new = window if member else None
        if old == new:
            return {}
        if new is None:
            del self.incidents[window.aggregate_id]
        else:
            self.incidents[window.aggregate_id] = new
        flipped = set()
        for at, change_id in self._made_while(old, new):
            before = self.cover.get(change_id, 0)
            after = before - _holds(old, at) + _holds(new, at)
            self.cover[change_id] = after
            if (before > 0) != (after > 0):
                flipped.add(change_id)
        return self._judge(flipped)

    def sensitive_to(self, window: Window) -> list[str]:
        """The deployments whose rework this incident alone decides (no other incident was open then)."""
        return [cid for at, cid in self._made_while(window, None) if self.cover.get(cid, 0) == _holds(window, at) == 1]

    def around(self, change_id: str) -> set[str]:
        """The deployments a change of this one could judge again (on a replay their verdicts are sent again)."""
        deployment = self.items.get(change_id)
        return self._around(deployment) if deployment is not None else set()

    def prune(self, before: datetime) -> tuple[list[str], list[str]]:
        """Forgets deployments made before `before` and incidents resolved before it, judging nothing
        again: what they were told stands. Returns the change_ids and aggregate_ids forgotten."""
        return self.forget_deployments(before), self.forget_incidents(before)

    def forget_deployments(self, before: datetime) -> list[str]:
        """Forgets deployments made before `before` (what they were told stands); their change_ids."""
        gone = [cid for at, cid in self.order[: bisect_left(self.order, (before, ""))]]
        for change_id in gone:
            self._remove(self.items[change_id])
            self.told.pop(change_id, None)
        return gone

    def forget_incidents(self, before: datetime) -> list[str]:
        """Forgets incidents whose every episode was resolved before `before`; their aggregate_ids."""
        closed = [aid for aid, w in self.incidents.items()
                  if all(e.resolved_at is not None and e.resolved_at < before for e in w.episodes)]  # fmt: skip
        for aggregate_id in closed:
            del self.incidents[aggregate_id]
        return closed

    # -- judging -----------------------------------------------------------------------------------

    def _judge(self, candidates: Iterable[str]) -> dict[str, Derived | None]:
        moved: dict[str, Derived | None] = {}
        for change_id in sorted(candidates):
            deployment = self.items.get(change_id)
            if deployment is None:
                continue
            derived = self._verdict(self._index(deployment))
            if self.told.get(change_id) != derived:
                self.told[change_id] = derived
                moved[change_id] = derived
        return moved

    def _verdict(self, i: int) -> Derived:
        change_id = self.order[i][1]
        deployment = self.items[change_id]
        rollback = self._rollback(i)
        rework = rollback or deployment.kind in UNPLANNED or self.cover.get(change_id, 0) > 0
        previous = self._previous_version(i) if deployment.version is not None else None
        if i + 1 < len(self.order) and self._rollback(i + 1):
            at, by = self.order[i + 1]
            return Derived(rollback=rollback, rework=rework, rolled_back_at=at, rolled_back_by=by, previous=previous)
        return Derived(rollback=rollback, rework=rework, previous=previous)

    def _previous_version(self, i: int) -> str | None:
        """The version of the last deployment before the i-th that named one."""
        j = i - 1
        while j >= 0 and self.items[self.order[j][1]].version is None:
            j -= 1
        return self.items[self.order[j][1]].version if j >= 0 else None

    def _rollback(self, i: int) -> bool:
        at, change_id = self.order[i]
        deployment = self.items[change_id]
        if deployment.kind == "rollback":
            return True
        version = deployment.version
        if version is None or self.versions[version][0] >= (at, change_id):
            return False  # no version, or the first deployment of its version
        previous = self._previous_version(i)
        return previous is not None and previous != version

    def _around(self, deployment: Deployment) -> set[str]:
        i = self._index(deployment)
        found = {cid for _, cid in self.order[max(0, i - 1) : i + 2]}
        j = i + 1
        while j < len(self.order) and self.items[self.order[j][1]].version is None:
            j += 1
        found.update(cid for _, cid in self.order[j - 1 : j + 1])
        if deployment.version is not None:
            for key in self.versions.get(deployment.version, [])[:2]:
                k = bisect_left(self.order, key)
                found.update(cid for _, cid in self.order[max(0, k - 1) : k + 1])
        return found

    def _made_while(self, old: Window | None, new: Window | None) -> list[tuple[datetime, str]]:
        """The deployments made while either version of an incident had an episode open, in order."""
        episodes = [*(old.episodes if old else ()), *(new.episodes if new else ())]
        if not episodes:
            return []
        start = min(e.opened_at for e in episodes)
        ends = [e.resolved_at for e in episodes]
        end = None if None in ends else max(at for at in ends if at is not None)
        first = bisect_right(self.order, (start, _LAST))
        last = len(self.order) if end is None else bisect_right(self.order, (end, _LAST))
        return self.order[first:last]

    # -- the indexes -------------------------------------------------------------------------------

    def _index(self, deployment: Deployment) -> int:
        return bisect_left(self.order, deployment.order)

    def _insert(self, deployment: Deployment) -> None:
        self.items[deployment.change_id] = deployment
        insort(self.order, deployment.order)
        if deployment.version is not None:
            insort(self.versions.setdefault(deployment.version, []), deployment.order)
        at = deployment.changed_at
        self.cover[deployment.change_id] = sum(_holds(w, at) for w in self.incidents.values())

    def _remove(self, deployment: Deployment) -> None:
        del self.items[deployment.change_id]
        self.order.pop(self._index(deployment))
        self.cover.pop(deployment.change_id, None)
        if deployment.version is not None:
            same = self.versions[deployment.version]
            same.pop(bisect_left(same, deployment.order))
            if not same:
                del self.versions[deployment.version]


_LAST = "\U0010ffff"
"""Sorts after every change_id: `(time, _LAST)` is just after every deployment made at that time."""


def _holds(window: Window | None, at: datetime) -> int:
    """1 when an episode of the incident was open at `at`, else 0."""
    return int(window is not None and any(holds(e, at) for e in window.episodes))


class HistoryFacts(Value):
    """What the change fold keeps of one history's verdicts for a change: the newest by `seq`."""

    seq: int
    derived: Derived | None = None


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


S = TypeVar("S", bound=Sequenced)


def newest(a: Mapping[str, S], b: Mapping[str, S]) -> dict[str, S]:
    """Per key (a history's `service|env`, a lead time join's repository), the verdict with the larger
    sequence number."""
    out = dict(a)
    for key, facts in b.items():
        known = out.get(key)
        if known is None or facts.seq > known.seq:
            out[key] = facts
    return dict(sorted(out.items()))


joined_history = newest
