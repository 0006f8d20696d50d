"""Changes and their correlation with incidents: the change fold, the match rule, scores and ranks.

A `Change` is a join-semilattice: `join` is commutative, associative and idempotent, so a change
is a function of the *set* of its events (any order, any duplicates) and two snapshots of the same
change combine into the newer one wherever they meet. Incident sides are ordered by the
incident's `version`. The streaming stages only move these values between partitions; every
decision (does this pair match, how strong, which rank, what to retract) is made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from incidentflow.domain.events import ChangeEvent, UtcDatetime, content_id
from incidentflow.domain.history import Deployment, Derived, HistoryFacts, HistoryVerdict, joined_history, series_of
from incidentflow.domain.incident import Incident
from incidentflow.domain.lead import LeadFacts, LeadRequest, LeadVerdict, joined_leads
from incidentflow.domain.metrics import (
    NO_SEVERITY,
    ChangeMember,
    DayFigures,
    RecoveryMember,
    Step,
    env_of,
    member_of,
    series_key,
)
from incidentflow.domain.records import Correlation, MetricRow

CHANGED = ("processing", "done")
"""Statuses that give a change its change time (the first of them)."""

DEFAULT_SCOPE = ("service", "cluster", "host", "namespace", "app")
DEFAULT_CONFLICT = ("env", "environment", "region")
SLOT = timedelta(hours=1)
"""Scope tables file incidents and changes in hourly slots of their time, so a lookup reads a few slots."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Rules:
    """Which labels scope a correlation and which ones must not conflict (the same on every worker)."""

    scope: tuple[str, ...] = DEFAULT_SCOPE
    conflict: tuple[str, ...] = DEFAULT_CONFLICT

    def buckets(self, labels: Mapping[str, str]) -> list[str]:
        """The scope buckets (`key=value`) a side with these labels is filed under."""
        return [f"{key}={labels[key]}" for key in self.scope if key in labels]


class Stamped(_Value):
    """A value with the event-order key of the event that set it: the later one wins a join."""

    at: UtcDatetime
    event_id: str
    value: str


def _later(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None or b is None:
        return a or b
    return a if (a.at, a.event_id, a.value) >= (b.at, b.event_id, b.value) else b


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


class Change(_Value):
    """A change as of the events seen: status history folded into what correlation needs."""

    change_id: str
    integration: str
    source: str
    status: Stamped = Field(description="Status of the latest event (by event time, then event id).")
    changed_at: UtcDatetime | None = Field(description="Change time: the first `processing` or `done`.")
    labels: dict[str, Stamped] = Field(description="Per label, the value of the latest event that carried it.")
    title: Stamped | None = None
    url: Stamped | None = None
    committed_at: UtcDatetime | None = Field(default=None, description="The earliest commit time any event gave.")
    kind: Stamped | None = Field(
        default=None, description="The kind of the latest event that is not a plain deployment."
    )
    version: Stamped | None = Field(default=None, description="The version of the latest event that named one.")

    @property
    def counted(self) -> bool:
        """A change counts (and may correlate) once it has a change time and is not canceled."""
        return self.changed_at is not None and self.status.value in CHANGED

    @property
    def flat_labels(self) -> dict[str, str]:
        return {key: stamped.value for key, stamped in self.labels.items()}

    @property
    def service(self) -> str:
        return self.flat_labels.get("service") or "unknown"

    @property
    def env(self) -> str:
        return env_of(self.flat_labels)

    @property
    def deployment(self) -> Deployment | None:
        """What the deployment history of its service and env needs of it; None while it does not count."""
        if not self.counted or self.changed_at is None:
            return None
        kind = self.kind.value if self.kind is not None else "deployment"
        return Deployment(change_id=self.change_id, changed_at=self.changed_at, kind=kind,
                          version=self.version.value if self.version is not None else None)  # fmt: skip


def change_of(event: ChangeEvent) -> Change:
    """The change as one event tells it."""

    def stamp(value: str | None) -> Stamped | None:
        return None if value is None else Stamped(at=event.occurred_at, event_id=event.event_id, value=value)

    return Change(
        change_id=event.change_id,
        integration=event.integration,
        source=event.source,
        status=Stamped(at=event.occurred_at, event_id=event.event_id, value=event.status),
        changed_at=event.occurred_at if event.status in CHANGED else None,
        labels={
            key: Stamped(at=event.occurred_at, event_id=event.event_id, value=value)
            for key, value in event.labels.items()
        },  # fmt: skip
        title=stamp(event.title),
        url=stamp(event.url),
        committed_at=event.committed_at,
        kind=stamp(event.kind) if event.kind != "deployment" else None,
        version=stamp(event.version),
    )


def join(a: Change | None, b: Change) -> Change:
    """Both snapshots of one change combined: what all their events together say."""
    if a is None:
        return b
    labels = dict(a.labels)
    for key, stamped in b.labels.items():
        labels[key] = _later(labels.get(key), stamped) or stamped
    return a.model_copy(
        update={
            "status": _later(a.status, b.status),
            "changed_at": _earlier(a.changed_at, b.changed_at),
            "labels": dict(sorted(labels.items())),
            "title": _later(a.title, b.title),
            "url": _later(a.url, b.url),
            "committed_at": _earlier(a.committed_at, b.committed_at),
            "kind": _later(a.kind, b.kind),
            "version": _later(a.version, b.version),
        }
    )


def fold_changes(events: Iterable[ChangeEvent]) -> Change | None:
    change = None
    for event in events:
        change = join(change, change_of(event))
    return change


class IncidentSide(_Value):
    """What correlation needs of an incident, with the window of its integration."""

    aggregate_id: str
    version: int
    opened_at: UtcDatetime
    labels: dict[str, str]
    lookback_seconds: float
    lookahead_seconds: float
    resolved_at: UtcDatetime | None = Field(
        default=None, description="The incident's final resolution while it is resolved; null while open."
    )

    def view(self) -> tuple[object, ...]:
        """Everything that decides a match: a new version with the same view changes nothing."""
        return (self.opened_at, self.labels, self.lookback_seconds, self.lookahead_seconds)

    @property
    def restored(self) -> Restored:
        return Restored(version=self.version, resolved_at=self.resolved_at)


def incident_side(incident: Incident, lookback_seconds: float, lookahead_seconds: float) -> IncidentSide:
    resolved_at = incident.resolved_at if incident.status == "resolved" else None
    return IncidentSide(aggregate_id=incident.aggregate_id, version=incident.version, opened_at=incident.opened_at,
                        labels=incident.labels, lookback_seconds=lookback_seconds,
                        lookahead_seconds=lookahead_seconds, resolved_at=resolved_at)  # fmt: skip


class Restored(_Value):
    """Whether an incident is resolved, as of its `version`: the later version wins a join."""

    version: int
    resolved_at: UtcDatetime | None = None


def _newer_restored(a: Restored | None, b: Restored) -> Restored:
    return b if a is None or b.version > a.version else a


def _restored_join(a: Mapping[str, Restored], b: Mapping[str, Restored]) -> dict[str, Restored]:
    joined = dict(a)
    for aggregate_id, restored in b.items():
        joined[aggregate_id] = _newer_restored(joined.get(aggregate_id), restored)
    return dict(sorted(joined.items()))


def newer(a: IncidentSide | None, b: IncidentSide) -> IncidentSide:
    return b if a is None or b.version > a.version else a


class Evidence(_Value):
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


class Pair(_Value):
    """The last record published for one (incident, change) pair and how often its liveness flipped.

    `flips` is odd while the pair is live and even once retracted, so a verdict carrying it can be
    applied in any order downstream: the larger count wins and its parity is the liveness.
    """

    record: Correlation
    flips: int


class Suspects(_Value):
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


class Verdict(_Value):
    """Stage 2 -> change fold: whether a pair is live, as of its `flips` count (odd = live), and
    whether its incident is resolved, as of the incident's version."""

    aggregate_id: str
    change_id: str
    flips: int
    restored: Restored | None = None

    @property
    def live(self) -> bool:
        return self.flips % 2 == 1


NOT_DERIVED = Derived()
"""The verdict of a change no deployment history has spoken of (yet)."""


class ChangeFacts(_Value):
    """All the change fold knows of one change: the change and its pairs' flip counts.

    A join-semilattice like `Change`: the metric series keep the join of every copy they receive,
    so copies may arrive in any order and any number of times, also after a crash and a replay.
    """

    change: Change
    verdicts: dict[str, int] = Field(default_factory=dict, description="aggregate_id -> flips (odd = live)")
    restored: dict[str, Restored] = Field(
        default_factory=dict, description="aggregate_id -> whether the incident is resolved, by its version"
    )
    history: dict[str, HistoryFacts] = Field(
        default_factory=dict, description="`service|env` -> its deployment history's newest verdict on the change"
    )
    ever_rolled_back: bool = Field(
        default=False,
        description="Whether a history ever said a rollback undid it (its recovery series then hears of it).",
    )
    lead: dict[str, LeadFacts] = Field(
        default_factory=dict, description="repository -> the lead time join's newest verdict on the change"
    )

    @property
    def lead_request(self) -> tuple[str, LeadRequest] | None:
        """What the change asks the lead time join, and where (its `repository` label): a counted change
        with a version and no explicit commit time, once its deployment history has spoken (it names the
        previous deployment's version, where the chain of pushes starts)."""
        change = self.change
        repository = change.flat_labels.get("repository")
        if (not repository or change.version is None or change.committed_at is not None or not change.counted
                or change.changed_at is None):  # fmt: skip
            return None
        facts = self.history.get(series_of(change.service, change.env))
        if facts is None or facts.derived is None:
            return None
        derived = facts.derived
        request = LeadRequest(change_id=change.change_id, sha=change.version.value, until=derived.previous,
                              ships=not derived.rollback, changed_at=change.changed_at)  # fmt: skip
        return repository, request

    @property
    def committed_at(self) -> datetime | None:
        """The earliest commit the change ships: an event's explicit one wins, else the lead time join's."""
        if self.change.committed_at is not None:
            return self.change.committed_at
        asked = self.lead_request
        facts = self.lead.get(asked[0]) if asked is not None else None
        return facts.lead.committed_at if facts is not None and facts.lead is not None else None

    @property
    def lead_seconds(self) -> float | None:
        """Lead time: change time - earliest commit time (0 for a commit stamped after the change)."""
        committed, changed = self.committed_at, self.change.changed_at
        if changed is None or committed is None:
            return None
        return max(0.0, (changed - committed).total_seconds())

    @property
    def derived(self) -> Derived:
        """What the deployment history of the change's own service and env says of it."""
        facts = self.history.get(series_of(self.change.service, self.change.env))
        return facts.derived if facts is not None and facts.derived is not None else NOT_DERIVED

    @property
    def failed(self) -> bool:
        """Failed while at least one of its correlations is live, or once a rollback undid it."""
        return any(flips % 2 == 1 for flips in self.verdicts.values()) or self.derived.rolled_back_at is not None

    @property
    def recovered_at(self) -> datetime | None:
        """A failed change recovers once it was rolled back and the last of its live correlated incidents
        is resolved: the latest of the rollback and their resolutions (None before, or not failed)."""
        live = [aggregate_id for aggregate_id, flips in self.verdicts.items() if flips % 2 == 1]
        resolved = [self.restored[a].resolved_at for a in live if a in self.restored]
        if len(resolved) < len(live) or None in resolved:
            return None
        times = [at for at in resolved if at is not None]
        if self.derived.rolled_back_at is not None:
            times.append(self.derived.rolled_back_at)
        return max(times, default=None)

    @property
    def recovery_seconds(self) -> float | None:
        """Failed deployment recovery time: change time -> recovered (0 for a recovery before the change time)."""
        recovered, changed = self.recovered_at, self.change.changed_at
        if recovered is None or changed is None:
            return None
        return max(0.0, (recovered - changed).total_seconds())

    def member(self, service: str, env: str) -> ChangeMember:
        """Where the change stands in the change series of (`service`, `env`): present only in its current one."""
        here = self.change.counted and self.change.service == service and self.change.env == env
        derived = self.derived
        return ChangeMember(present=here, changed_at=self.change.changed_at if here else None,
                            failed=here and self.failed, lead_seconds=self.lead_seconds if here else None,
                            rework=here and derived.rework, rollback=here and derived.rollback)  # fmt: skip

    def recovery(self, service: str, env: str) -> RecoveryMember:
        """Where the change stands in the recovery series of (`service`, `env`): present once it has
        recovered from its failure, filed on the day it recovered."""
        here = self.change.counted and self.change.service == service and self.change.env == env
        seconds = self.recovery_seconds if here else None
        if seconds is None:
            return RecoveryMember(present=False)
        return RecoveryMember(present=True, recovered_at=self.recovered_at, seconds=seconds)

    def join(self, other: ChangeFacts) -> ChangeFacts:
        verdicts = dict(self.verdicts)
        for aggregate_id, flips in other.verdicts.items():
            verdicts[aggregate_id] = max(flips, verdicts.get(aggregate_id, 0))
        return ChangeFacts(change=join(self.change, other.change), verdicts=dict(sorted(verdicts.items())),
                           restored=_restored_join(self.restored, other.restored),
                           history=joined_history(self.history, other.history),
                           ever_rolled_back=self.ever_rolled_back or other.ever_rolled_back,
                           lead=joined_leads(self.lead, other.lead))  # fmt: skip


class ChangeContribution(_Value):
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


class ChangeRecord(_Value):
    """The change fold's state: the facts, and every (service, env) series they were sent to."""

    facts: ChangeFacts | None = None
    series: tuple[tuple[str, str], ...] = ()
    pending: dict[str, int] = Field(default_factory=dict, description="Verdicts that came before any event.")
    pending_restored: dict[str, Restored] = Field(
        default_factory=dict, description="What those verdicts said of their incidents' resolution."
    )
    pending_history: dict[str, HistoryFacts] = Field(
        default_factory=dict, description="Deployment history verdicts that came before any event."
    )
    waiting_since: date | None = Field(
        default=None, description="For verdicts with no event: the event day of the change fold when the first came."
    )

    @property
    def since(self) -> date | None:
        """The day the change's state horizon counts from: its change time (its latest status before
        it has one), or the day it recovered when that is later; None while it failed and has not
        recovered (it may still change). For verdicts with no event, `waiting_since`."""
        facts = self.facts
        if facts is None:
            return self.waiting_since
        change = facts.change
        day = (change.changed_at or change.status.at).date()
        if facts.failed:
            recovered = facts.recovered_at
            return None if recovered is None else max(day, recovered.date())
        return day


def with_change_event(record: ChangeRecord, event: ChangeEvent) -> ChangeRecord:
    rolled_back = any(f.derived is not None and f.derived.rolled_back_at is not None
                      for f in record.pending_history.values())  # fmt: skip
    new = ChangeFacts(change=change_of(event), verdicts=record.pending, restored=record.pending_restored,
                      history=record.pending_history, ever_rolled_back=rolled_back)  # fmt: skip
    facts = new if record.facts is None else record.facts.join(new)
    return record.model_copy(update={"facts": facts, "pending": {}, "pending_restored": {}, "pending_history": {},
                                     "waiting_since": None})  # fmt: skip


def with_history_verdict(record: ChangeRecord, verdict: HistoryVerdict) -> ChangeRecord:
    """A deployment history's verdict; one for a change not seen yet is kept for its events."""
    told = {verdict.series: HistoryFacts(seq=verdict.seq, derived=verdict.derived)}
    if record.facts is None:
        pending = joined_history(record.pending_history, told)
        return record if pending == record.pending_history else record.model_copy(update={"pending_history": pending})
    joined = joined_history(record.facts.history, told)
    if joined == record.facts.history:
        return record
    rolled_back = record.facts.ever_rolled_back or any(
        f.derived is not None and f.derived.rolled_back_at is not None for f in joined.values()
    )
    facts = record.facts.model_copy(update={"history": joined, "ever_rolled_back": rolled_back})
    return record.model_copy(update={"facts": facts})


def with_lead_verdict(record: ChangeRecord, verdict: LeadVerdict) -> ChangeRecord:
    """The lead time join's verdict (it answers the change fold's requests: the change is known)."""
    if record.facts is None:
        return record
    joined = joined_leads(record.facts.lead, {verdict.repository: LeadFacts(seq=verdict.seq, lead=verdict.lead)})
    if joined == record.facts.lead:
        return record
    return record.model_copy(update={"facts": record.facts.model_copy(update={"lead": joined})})


def with_verdict(record: ChangeRecord, verdict: Verdict) -> ChangeRecord:
    """A verdict for a change not seen yet is kept too (its events may still be on their way)."""
    told = {verdict.aggregate_id: verdict.restored} if verdict.restored is not None else {}
    if record.facts is None:
        flips = max(verdict.flips, record.pending.get(verdict.aggregate_id, 0))
        return record.model_copy(update={"pending": {**record.pending, verdict.aggregate_id: flips},
                                         "pending_restored": _restored_join(record.pending_restored, told)})  # fmt: skip
    known = record.facts
    flips = max(verdict.flips, known.verdicts.get(verdict.aggregate_id, 0))
    restored = _restored_join(known.restored, told)
    if flips == known.verdicts.get(verdict.aggregate_id) and restored == known.restored:
        return record
    verdicts = dict(sorted({**known.verdicts, verdict.aggregate_id: flips}.items()))
    return record.model_copy(update={"facts": known.model_copy(update={"verdicts": verdicts, "restored": restored})})


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


def slot_of(at: datetime) -> str:
    """The hourly slot of a UTC time, `YYYY-MM-DDTHH` (formatted by hand: `strftime` is several times slower)."""
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}"


def slots_between(start: datetime, end: datetime) -> list[str]:
    """The hourly slots that [start, end] touches."""
    first = start.replace(minute=0, second=0, microsecond=0)
    return [slot_of(first + i * SLOT) for i in range(int((end - first) / SLOT) + 1)]


class ScopeChange(_Value):
    """A change filed in one scope bucket, with the incidents it was forwarded to from there."""

    change: Change
    forwarded: tuple[str, ...] = ()


class Side(_Value):
    """A record of the internal correlation topics: an incident side or a change snapshot.

    `member` is False on the last record a scope bucket gets for a side whose label left it, and on
    the last record a stage gets for an item past the state horizon (`closed`): it then forgets
    the item and tells no one.
    """

    incident: IncidentSide | None = None
    change: Change | None = None
    member: bool = True
    closed: bool = False
