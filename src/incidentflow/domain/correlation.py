"""Changes and incidents correlated: the match rule, scores, ranks and verdicts.

Incident sides are ordered by the incident's `version`, changes are joins (domain/changes.py). The
streaming stages only move these values between partitions; every decision (does this pair match,
how strong, which rank, what to retract) is made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from incidentflow.domain.base import Value
from incidentflow.domain.changes import Change, join
from incidentflow.domain.events import Instant, content_id
from incidentflow.domain.incident import Incident
from incidentflow.domain.records import Correlation

DEFAULT_SCOPE = ("service", "cluster", "host", "namespace", "app")


DEFAULT_CONFLICT = ("env", "environment", "region")


SLOT = timedelta(hours=1)
"""Scope tables file incidents and changes in hourly slots of their time, so a lookup reads a few slots."""


@dataclass(frozen=True)
class Rules:
    """Which labels scope a correlation and which ones must not conflict (the same on every worker)."""

    scope: tuple[str, ...] = DEFAULT_SCOPE
    conflict: tuple[str, ...] = DEFAULT_CONFLICT

    def buckets(self, labels: Mapping[str, str]) -> list[str]:
        """The scope buckets (`key=value`) a side with these labels is filed under."""
        return [f"{key}={labels[key]}" for key in self.scope if key in labels]


class IncidentSide(Value):
    """What correlation needs of an incident, with the window of its integration."""

    aggregate_id: str
    version: int
    opened_at: Instant
    labels: dict[str, str]
    lookback_seconds: float
    lookahead_seconds: float
    resolved_at: Instant | None = Field(
        default=None, description="The incident's final resolution while it is resolved; null while open."
    )

    def view(self) -> tuple[object, ...]:
        """Everything that decides a match: a new version with the same view changes nothing."""
        return (self.opened_at, self.labels, self.lookback_seconds, self.lookahead_seconds)

    @property
    def restored(self) -> Restored:
        return Restored(version=self.version, resolved_at=self.resolved_at)


def incident_side(incident: Incident, lookback_seconds: float, lookahead_seconds: float) -> IncidentSide:
    return IncidentSide(aggregate_id=incident.aggregate_id, version=incident.version, opened_at=incident.opened_at,
                        labels=incident.labels, lookback_seconds=lookback_seconds,
                        lookahead_seconds=lookahead_seconds, resolved_at=_final_resolution(incident))  # fmt: skip


def _final_resolution(incident: Incident) -> datetime | None:
    return incident.resolved_at if incident.status == "resolved" else None


def side_moved(before: Incident, after: Incident) -> tuple[bool, bool]:
    """Between two versions of an incident (of one integration, so one window): whether its side's
    `view` moved, and whether its `resolved_at` did."""
    view = before.opened_at != after.opened_at or before.labels != after.labels
    return view, _final_resolution(before) != _final_resolution(after)


class Restored(Value):
    """Whether an incident is resolved, as of its `version`: the later version wins a join."""

    version: int
    resolved_at: Instant | None = None


def _newer_restored(a: Restored | None, b: Restored) -> Restored:
    return b if a is None or b.version > a.version else a


def restored_join(a: Mapping[str, Restored], b: Mapping[str, Restored]) -> dict[str, Restored]:
    joined = dict(a)
    for aggregate_id, restored in b.items():
        joined[aggregate_id] = _newer_restored(joined.get(aggregate_id), restored)
    return dict(sorted(joined.items()))


def newer(a: IncidentSide | None, b: IncidentSide) -> IncidentSide:
    return b if a is None or b.version > a.version else a


class Evidence(Value):
    delta_seconds: float
    matched_labels: dict[str, str]
    score: float


def match(incident: IncidentSide, change: Change, rules: Rules) -> Evidence | None:
    """The rule: change time within [opened_at - lookback, opened_at + lookahead] (edges included),
    at least one scope label equal on both sides, and no conflict label that differs.

    The score (0..1) prefers more shared scope first and then a smaller gap: each shared scope
    label is worth 1/len(scope), and the gap's closeness (1 at zero gap, 0 at a gap as long as the
    longer side of the window) adds up to one more such step. A smaller gap scores higher on either
    side of the open.
    """
    if not change.counted or change.changed_at is None:
        return None
    delta = (incident.opened_at - change.changed_at).total_seconds()
    if not -incident.lookahead_seconds <= delta <= incident.lookback_seconds:
        return None
    labels = change.flat_labels
    matched = {key: incident.labels[key] for key in rules.scope
               if key in incident.labels and labels.get(key) == incident.labels[key]}  # fmt: skip
    if not matched:
        return None
    if any(key in incident.labels and key in labels and incident.labels[key] != labels[key] for key in rules.conflict):
        return None
    span = max(incident.lookback_seconds, incident.lookahead_seconds)
    closeness = 1.0 - abs(delta) / span if span > 0 else 1.0
    score = round((len(matched) - 1 + closeness) / len(rules.scope), 6)
    return Evidence(delta_seconds=delta, matched_labels=matched, score=min(1.0, max(0.0, score)))


def correlation_id(aggregate_id: str, change_id: str) -> str:
    return content_id("correlation", aggregate_id, change_id)


def correlate(incident: IncidentSide, changes: Iterable[Change], rules: Rules) -> dict[str, Correlation]:
    """The incident's live correlations by change_id, ranked: higher score, then smaller gap, then change_id."""
    found = [(change, evidence) for change in changes if (evidence := match(incident, change, rules)) is not None]
    found.sort(key=lambda pair: (-pair[1].score, abs(pair[1].delta_seconds), pair[0].change_id))
    return {
        change.change_id: Correlation(
            correlation_id=correlation_id(incident.aggregate_id, change.change_id),
            aggregate_id=incident.aggregate_id,
            change_id=change.change_id,
            incident_opened_at=incident.opened_at,
            change_occurred_at=change.changed_at,
            delta_seconds=evidence.delta_seconds,
            matched_labels=evidence.matched_labels,
            score=evidence.score,
            rank=rank,
        )
        for rank, (change, evidence) in enumerate(found, start=1)
        if change.changed_at is not None
    }


class Pair(Value):
    """The last record published for one (incident, change) pair and how often its liveness flipped.

    `flips` is odd while the pair is live and even once retracted, so a verdict carrying it can be
    applied in any order downstream: the larger count wins and its parity is the liveness.
    """

    record: Correlation
    flips: int


class Suspects(Value):
    """An incident's correlation state: its side, the changes forwarded to it, and what was published."""

    incident: IncidentSide | None = None
    changes: dict[str, Change] = Field(default_factory=dict)
    pairs: dict[str, Pair] = Field(default_factory=dict)
    position: int = Field(
        default=-1, description="Position (offset and item) of the last input that changed this state."
    )


@dataclass(frozen=True)
class Outcome:
    state: Suspects
    published: list[Correlation]
    """Records to publish: new or changed live ones, and retractions."""
    flipped: list[Pair]
    """Pairs whose liveness changed, or whose incident was resolved or reopened: verdicts for the
    change's failure status and recovery."""


def with_incident(state: Suspects, side: IncidentSide, rules: Rules) -> Outcome:
    incident = newer(state.incident, side)
    outcome = _settle(state.model_copy(update={"incident": incident}), rules)
    if state.incident is None or state.incident.resolved_at == incident.resolved_at:
        return outcome
    # Resolved or reopened: every change it correlates with hears of it, for its recovery time.
    told = {pair.record.change_id for pair in outcome.flipped}
    more = [pair for change_id, pair in outcome.state.pairs.items() if change_id not in told]
    return Outcome(outcome.state, outcome.published, [*outcome.flipped, *more])


def with_change(state: Suspects, change: Change, rules: Rules) -> Outcome:
    merged = join(state.changes.get(change.change_id), change)
    return _settle(state.model_copy(update={"changes": {**state.changes, change.change_id: merged}}), rules)


def _settle(state: Suspects, rules: Rules) -> Outcome:
    if state.incident is None:
        return Outcome(state, [], [])
    live = correlate(state.incident, state.changes.values(), rules)
    pairs = dict(state.pairs)
    published: list[Correlation] = []
    flipped: list[Pair] = []
    for change_id, record in live.items():
        old = pairs.get(change_id)
        if old is not None and old.record == record:
            continue
        was_live = old is not None and not old.record.retracted
        pair = Pair(record=record, flips=(old.flips if old else 0) + (0 if was_live else 1))
        pairs[change_id] = pair
        published.append(record)
        if not was_live:
            flipped.append(pair)
    for change_id, old in state.pairs.items():
        if change_id not in live and not old.record.retracted:
            pair = Pair(record=old.record.model_copy(update={"retracted": True}), flips=old.flips + 1)
            pairs[change_id] = pair
            published.append(pair.record)
            flipped.append(pair)
    return Outcome(state.model_copy(update={"pairs": pairs}), published, flipped)


class Verdict(Value):
    """Stage 2 -> change fold: whether a pair is live, as of its `flips` count (odd = live), and
    whether its incident is resolved, as of the incident's version."""

    aggregate_id: str
    change_id: str
    flips: int
    restored: Restored | None = None

    @property
    def live(self) -> bool:
        return self.flips % 2 == 1


def slot_of(at: datetime) -> str:
    """The hourly slot of a UTC time, `YYYY-MM-DDTHH` (formatted by hand: `strftime` is several times slower)."""
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}"


def slots_between(start: datetime, end: datetime) -> list[str]:
    """The hourly slots that [start, end] touches."""
    first = start.replace(minute=0, second=0, microsecond=0)
    return [slot_of(first + i * SLOT) for i in range(int((end - first) / SLOT) + 1)]


class ScopeChange(Value):
    """A change filed in one scope bucket, with the incidents it was forwarded to from there."""

    change: Change
    forwarded: tuple[str, ...] = ()


class Side(Value):
    """A record of the internal correlation topics: an incident side or a change snapshot.

    `member` is False on the last record a scope bucket gets for a side whose label left it, and on
    the last record a stage gets for an item past the state horizon (`closed`): it then forgets
    the item and tells no one.
    """

    incident: IncidentSide | None = None
    change: Change | None = None
    member: bool = True
    closed: bool = False
