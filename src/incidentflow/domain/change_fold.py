"""The change fold's state: what it knows of one change (its events, its correlations' verdicts, its
deployment history's and lead time join's verdicts) and the change's DORA figures derived from it.

`ChangeFacts` is a join-semilattice like `Change`: the metric series keep the join of every copy
they receive, so copies may arrive in any order and any number of times, also after a crash and a
replay.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from incidentflow.domain.base import Value
from incidentflow.domain.changes import Change, change_of, join
from incidentflow.domain.correlation import Restored, Verdict, restored_join
from incidentflow.domain.events import ChangeEvent
from incidentflow.domain.history import Derived, HistoryFacts, HistoryVerdict, joined_history, series_of
from incidentflow.domain.lead import LeadFacts, LeadRequest, LeadVerdict, joined_leads
from incidentflow.domain.metrics import ChangeMember, RecoveryMember

NOT_DERIVED = Derived()
"""The verdict of a change no deployment history has spoken of (yet)."""


class ChangeFacts(Value):
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
                           restored=restored_join(self.restored, other.restored),
                           history=joined_history(self.history, other.history),
                           ever_rolled_back=self.ever_rolled_back or other.ever_rolled_back,
                           lead=joined_leads(self.lead, other.lead))  # fmt: skip


class ChangeRecord(Value):
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
                                         "pending_restored": restored_join(record.pending_restored, told)})  # fmt: skip
    known = record.facts
    flips = max(verdict.flips, known.verdicts.get(verdict.aggregate_id, 0))
    restored = restored_join(known.restored, told)
    if flips == known.verdicts.get(verdict.aggregate_id) and restored == known.restored:
        return record
    verdicts = dict(sorted({**known.verdicts, verdict.aggregate_id: flips}.items()))
    return record.model_copy(update={"facts": known.model_copy(update={"verdicts": verdicts, "restored": restored})})
