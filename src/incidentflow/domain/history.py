"""Deployment history per service and env: rollbacks, the changes they undo, and rework.

A service and env's history is the set of its deployments (counted changes: change time, kind,
version) and of its incidents' episodes. What it says of each deployment (`Derived`) is a function
of that set alone, so deployments and incidents may arrive in any order, late or twice: each input
recomputes the history and every deployment whose verdict moved is told again, with a sequence
number that only grows (`HistoryVerdict.seq`), so the change fold keeps the newest.

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

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain.events import ChangeKind, UtcDatetime
from incidentflow.domain.incident import Incident
from incidentflow.domain.metrics import UNKNOWN, env_of

UNPLANNED: tuple[ChangeKind, ...] = ("rollback", "hotfix", "revert")
"""Kinds of change that are rework by themselves."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deployment(_Value):
    """What the history needs of a counted change."""

    change_id: str
    changed_at: UtcDatetime
    kind: ChangeKind = "deployment"
    version: str | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.changed_at, self.change_id)


class Episode(_Value):
    opened_at: UtcDatetime
    resolved_at: UtcDatetime | None = None

    def holds(self, at: datetime) -> bool:
        """Whether a deployment at `at` was made while this episode was open: after it opened, no later than its resolution."""
        return self.opened_at < at and (self.resolved_at is None or at <= self.resolved_at)


class Window(_Value):
    """An incident of the service and env: its episodes, as of its version (the newer version wins)."""

    aggregate_id: str
    version: int
    episodes: tuple[Episode, ...]


class HistoryInput(_Value):
    """A record of the deployment history topic, keyed `service|env`: a deployment or an incident
    that belongs to the service and env (`member`), or that left it (moved, or no longer counted)."""

    deployment: Deployment | None = None
    change_id: str | None = Field(default=None, description="The change that left (with `member` false).")
    incident: Window | None = None
    member: bool = True


class Derived(_Value):
    """What the history says of one deployment."""

    rollback: bool = False
    rework: bool = False
    rolled_back_at: UtcDatetime | None = Field(default=None, description="When the rollback that undoes it was made.")
    rolled_back_by: str | None = None


class HistoryVerdict(_Value):
    """History -> change fold, keyed by change_id: the deployment's verdict in one service and env's
    history as of `seq` (the larger wins); `derived` null once it is no longer in that history."""

    change_id: str
    series: str = Field(description="`service|env` of the history.")
    seq: int
    derived: Derived | None = None


class History(_Value):
    """The state of one service and env: deployments, incidents, and what each deployment was last told."""

    deployments: dict[str, Deployment] = Field(default_factory=dict)
    incidents: dict[str, Window] = Field(default_factory=dict)
    told: dict[str, Derived] = Field(default_factory=dict)
    seq: int = 0
    position: int = Field(default=-1, description="Position of the last input that changed this state.")


def series_of(service: str, env: str) -> str:
    return f"{service}|{env}"


def window_of(incident: Incident) -> tuple[str, Window]:
    """The history (`service|env`) an incident belongs to, and its episodes as that history keeps them."""
    service, env = incident.labels.get("service") or UNKNOWN, env_of(incident.labels)
    episodes = tuple(Episode(opened_at=e.opened_at, resolved_at=e.resolved_at) for e in incident.episodes)
    return series_of(service, env), Window(aggregate_id=incident.aggregate_id, version=incident.version,
                                           episodes=episodes)  # fmt: skip


def derive(deployments: Iterable[Deployment], incidents: Iterable[Window]) -> dict[str, Derived]:
    """The verdict of every deployment of one service and env's history."""
    ordered = sorted(deployments, key=lambda d: d.order)
    episodes = [episode for window in incidents for episode in window.episodes]
    seen_versions: set[str] = set()
    last_version: str | None = None
    rolled_back: dict[str, tuple[datetime, str]] = {}
    own: list[tuple[Deployment, bool]] = []
    for index, deployment in enumerate(ordered):
        version = deployment.version
        by_version = (
            version is not None and last_version is not None and version != last_version and version in seen_versions
        )
        rollback = deployment.kind == "rollback" or by_version
        if rollback and index > 0:
            rolled_back[ordered[index - 1].change_id] = (deployment.changed_at, deployment.change_id)
        if version is not None:
            seen_versions.add(version)
            last_version = version
        own.append((deployment, rollback))
    result = {}
    for deployment, rollback in own:
        at = deployment.changed_at
        rework = rollback or deployment.kind in UNPLANNED or any(e.holds(at) for e in episodes)
        undone = rolled_back.get(deployment.change_id)
        result[deployment.change_id] = Derived(
            rollback=rollback,
            rework=rework,
            rolled_back_at=undone[0] if undone else None,
            rolled_back_by=undone[1] if undone else None,
        )
    return result


def with_input(history: History, item: HistoryInput) -> History:
    """The history with one input applied (not yet derived again)."""
    deployments, incidents = dict(history.deployments), dict(history.incidents)
    if item.deployment is not None:
        if item.member:
            deployments[item.deployment.change_id] = item.deployment
        else:
            deployments.pop(item.deployment.change_id, None)
    elif item.change_id is not None and not item.member:
        deployments.pop(item.change_id, None)
    if item.incident is not None:
        known = incidents.get(item.incident.aggregate_id)
        if known is None or item.incident.version >= known.version:
            if item.member:
                incidents[item.incident.aggregate_id] = item.incident
            else:
                incidents.pop(item.incident.aggregate_id, None)
    if deployments == history.deployments and incidents == history.incidents:
        return history
    return history.model_copy(update={"deployments": deployments, "incidents": incidents})


def settle(history: History) -> tuple[History, dict[str, Derived | None]]:
    """Derives the history again: the new state, and the verdicts that moved (None: a deployment that left)."""
    derived = derive(history.deployments.values(), history.incidents.values())
    moved: dict[str, Derived | None] = {cid: d for cid, d in derived.items() if history.told.get(cid) != d}
    moved.update({cid: None for cid in history.told if cid not in derived})
    if not moved:
        return history, {}
    return history.model_copy(update={"told": dict(sorted(derived.items())), "seq": history.seq + 1}), moved


def pruned(history: History, before: datetime) -> History:
    """The history without deployments made before `before` and incidents whose every episode was
    resolved before it (past the state horizon). Nothing is derived again: what they were told stands."""
    deployments = {cid: d for cid, d in history.deployments.items() if d.changed_at >= before}
    incidents = {
        aid: w
        for aid, w in history.incidents.items()
        if any(e.resolved_at is None or e.resolved_at >= before for e in w.episodes)
    }
    if len(deployments) == len(history.deployments) and len(incidents) == len(history.incidents):
        return history
    told = {cid: d for cid, d in history.told.items() if cid in deployments}
    return history.model_copy(update={"deployments": deployments, "incidents": incidents, "told": told})


class HistoryFacts(_Value):
    """What the change fold keeps of one history's verdicts for a change: the newest by `seq`."""

    seq: int
    derived: Derived | None = None


def joined_history(a: Mapping[str, HistoryFacts], b: Mapping[str, HistoryFacts]) -> dict[str, HistoryFacts]:
    """Per history (`service|env`), the verdict with the larger sequence number."""
    out = dict(a)
    for series, facts in b.items():
        known = out.get(series)
        if known is None or facts.seq > known.seq:
            out[series] = facts
    return dict(sorted(out.items()))
