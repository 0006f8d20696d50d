"""Correlation: the change fold, window edges, labels and conflicts, statuses, scores and ranks, retraction."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain import change_fold as cf
from incidentflow.domain import changes as chg
from incidentflow.domain import contributions as contrib
from incidentflow.domain import correlation as corr
from incidentflow.domain.aggregate import AggregateState, apply
from incidentflow.domain.events import AlertEvent, ChangeEvent
from tests.factories import T0, alert, change
from tests.oracle import recompute_change, recompute_correlations, recompute_incident, recompute_recovery

RULES = corr.Rules()
LABELS = {"service": "checkout", "env": "prod"}


def side(
    minute: float = 0, labels: dict[str, str] | None = None, back: float = 60, ahead: float = 5
) -> corr.IncidentSide:
    return corr.IncidentSide(aggregate_id="acme:db-1", version=1, opened_at=T0 + timedelta(minutes=minute),
                             labels=LABELS if labels is None else labels, lookback_seconds=back * 60,
                             lookahead_seconds=ahead * 60)  # fmt: skip


def done_at(seconds_before_open: float, labels: dict[str, str] | None = None, key: str = "deploy-1") -> chg.Change:
    event = change("done", -seconds_before_open / 60, labels=LABELS if labels is None else labels, key=key)
    return chg.change_of(event)


@pytest.mark.parametrize(
    ("seconds_before_open", "matches"),
    [
        (3600, True),  # exactly at the lookback
        (3601, False),  # one second before it
        (0, True),
        (-300, True),  # exactly at the lookahead
        (-301, False),  # one second after it
        (1800, True),
    ],
)
def test_window_edges(seconds_before_open: float, matches: bool) -> None:
    assert (corr.match(side(), done_at(seconds_before_open), RULES) is not None) is matches


def test_window_comes_from_the_incident_side() -> None:
    assert corr.match(side(back=10, ahead=0), done_at(600), RULES) is not None
    assert corr.match(side(back=10, ahead=0), done_at(601), RULES) is None
    assert corr.match(side(back=10, ahead=0), done_at(-1), RULES) is None
    evidence = corr.match(side(back=0, ahead=0), done_at(0), RULES)
    assert evidence is not None
    assert evidence.score == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    ("incident_labels", "change_labels", "matched"),
    [
        ({"service": "checkout"}, {"service": "checkout"}, {"service": "checkout"}),
        ({"service": "checkout"}, {"service": "search"}, None),  # no shared scope value
        ({"team": "a"}, {"team": "a"}, None),  # not a scope label
        ({"service": "checkout", "env": "prod"}, {"service": "checkout", "env": "staging"}, None),  # conflict
        ({"service": "checkout", "env": "prod"}, {"service": "checkout"}, {"service": "checkout"}),  # one-sided: no conflict
        ({"service": "checkout", "region": "eu"}, {"service": "checkout", "region": "us"}, None),
        ({"service": "a", "cluster": "k1"}, {"service": "b", "cluster": "k1"}, {"cluster": "k1"}),
        ({"service": "a", "host": "h", "app": "x"}, {"service": "a", "host": "h", "app": "x"},
         {"service": "a", "host": "h", "app": "x"}),
        ({}, {}, None),
    ],
)  # fmt: skip
def test_label_matching_and_conflicts(
    incident_labels: dict[str, str], change_labels: dict[str, str], matched: dict[str, str] | None
) -> None:
    evidence = corr.match(side(labels=incident_labels), done_at(60, labels=change_labels), RULES)
    assert (evidence.matched_labels if evidence else None) == matched


def test_configured_rules() -> None:
    rules = corr.Rules(scope=("team",), conflict=("tier",))
    assert corr.match(side(labels={"team": "a"}), done_at(60, labels={"team": "a"}), rules) is not None
    assert (
        corr.match(side(labels={"team": "a", "tier": "1"}), done_at(60, labels={"team": "a", "tier": "2"}), rules)
        is None
    )
    assert rules.buckets({"team": "a", "service": "x"}) == ["team=a"]


@pytest.mark.parametrize(
    ("statuses", "counted"),
    [
        (["planned"], False),
        (["ready"], False),
        (["canceled"], False),
        (["planned", "ready"], False),
        (["planned", "processing"], True),
        (["ready", "done"], True),
        (["processing", "done"], True),
        (["processing", "canceled"], False),  # canceled after it started: withdrawn
        (["done", "processing"], True),
    ],
)
def test_statuses(statuses: list[str], counted: bool) -> None:
    events = [change(s, i, labels=LABELS) for i, s in enumerate(statuses)]  # type: ignore[arg-type]
    folded = chg.fold_changes(events)
    assert folded is not None
    assert folded.counted is counted
    assert (corr.match(side(minute=len(statuses)), folded, RULES) is not None) is counted


def test_change_time_is_the_first_processing_or_done_in_any_order() -> None:
    events = [
        change("planned", -50),
        change("processing", -30),
        change("done", -10),
        change("done", -40, key="deploy-1"),
    ]
    for _ in range(20):
        random.shuffle(events)
        folded = chg.fold_changes(events + events[:2])
        assert folded is not None
        assert folded.changed_at == T0 + timedelta(minutes=-40)
        assert folded.status.value == "done"


def test_scoring_order_prefers_shared_scope_then_a_smaller_gap() -> None:
    wide = {"service": "checkout", "cluster": "k1", "env": "prod"}
    incident = side(labels=wide)
    changes = [
        done_at(600, labels={"service": "checkout"}, key="near-one-label"),
        done_at(3000, labels={"service": "checkout", "cluster": "k1"}, key="far-two-labels"),
        done_at(1200, labels={"service": "checkout"}, key="farther-one-label"),
        done_at(-60, labels={"service": "checkout"}, key="after-open"),
    ]
    ranked = corr.correlate(incident, changes, RULES)
    order = sorted(ranked.values(), key=lambda c: c.rank)
    assert [c.change_id.split(":")[1] for c in order] == [
        "far-two-labels",
        "after-open",
        "near-one-label",
        "farther-one-label",
    ]
    assert [c.rank for c in order] == [1, 2, 3, 4]
    assert all(0 <= c.score <= 1 for c in order)
    assert order[0].delta_seconds == 3000
    assert order[1].delta_seconds == -60


def test_equal_scores_rank_by_change_id() -> None:
    ranked = corr.correlate(side(), [done_at(60, key="b"), done_at(60, key="a")], RULES)
    assert [ranked["ship:a"].rank, ranked["ship:b"].rank] == [1, 2]


def test_a_pair_that_leaves_the_window_is_retracted_once_and_can_come_back() -> None:
    state = corr.Suspects()
    first = corr.with_incident(state, side(), RULES)
    assert first.published == []
    live = corr.with_change(first.state, done_at(600), RULES)
    assert [(r.retracted, r.rank) for r in live.published] == [(False, 1)]
    assert [p.flips for p in live.flipped] == [1]
    again = corr.with_change(live.state, done_at(600), RULES)
    assert again.published == [] and again.state == live.state  # a redelivery publishes nothing
    moved = side(minute=-120).model_copy(update={"version": 2})  # an earlier open arrived late
    gone = corr.with_incident(live.state, moved, RULES)
    assert [(r.retracted, r.correlation_id) for r in gone.published] == [(True, live.published[0].correlation_id)]
    assert [p.flips for p in gone.flipped] == [2]
    older = corr.with_incident(gone.state, side(), RULES)  # a stale side changes nothing
    assert older.published == [] and older.state == gone.state
    back = corr.with_incident(gone.state, side().model_copy(update={"version": 3}), RULES)
    assert [r.retracted for r in back.published] == [False]
    assert [p.flips for p in back.flipped] == [3]


def test_verdicts_apply_in_any_order_even_before_the_change() -> None:
    verdicts = [corr.Verdict(aggregate_id="acme:a", change_id="ship:deploy-1", flips=n) for n in (1, 2, 3, 4)]
    event = change("done", 0, labels={"service": "a"})
    for _ in range(10):
        items: list[corr.Verdict | ChangeEvent] = [*verdicts, *verdicts, event]
        random.shuffle(items)
        record = cf.ChangeRecord()
        for item in items:
            if isinstance(item, corr.Verdict):
                record = cf.with_verdict(record, item)
            else:
                record = cf.with_change_event(record, item)
        assert record.facts is not None
        assert record.facts.verdicts == {"acme:a": 4}
        assert not record.facts.failed


def test_change_facts_go_to_every_service_they_were_in() -> None:
    record = cf.with_change_event(cf.ChangeRecord(), change("done", 0, labels={"service": "a"}))
    record, out = contrib.change_contributions(record)
    assert [(c.service, c.facts.member(c.service, c.env).present) for c in out] == [("a", True)]
    record = cf.with_verdict(record, corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=1))
    record, out = contrib.change_contributions(record)
    # once correlated, the change also goes to its recovery series
    assert [(c.metric, c.service, c.facts.member(c.service, c.env).failed) for c in out] == [
        ("changes", "a", True), ("recovery", "a", True)]  # fmt: skip
    record = cf.with_change_event(record, change("done", 5, labels={"service": "b"}))
    record, out = contrib.change_contributions(record)
    assert [(c.metric, c.service, c.facts.member(c.service, c.env).present) for c in out] == [
        ("changes", "a", False), ("recovery", "a", False), ("changes", "b", True), ("recovery", "b", True)]  # fmt: skip
    planned = cf.with_change_event(cf.ChangeRecord(), change("planned", 0, key="later"))
    assert contrib.change_contributions(planned)[1] == []


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(6))), st.lists(st.integers(0, 5), max_size=6))
def test_a_series_member_is_the_same_whatever_order_and_repeats_its_facts_come_in(
    order: list[int], repeats: list[int]
) -> None:
    """The change series keep the join of the facts they receive: replays after a crash cannot roll them back."""
    events = [change("planned", 0, labels={"service": "a"}), change("processing", 3, labels={"service": "a"}),
              change("done", 9, labels={"service": "b"}), change("canceled", 12, labels={"service": "b"})]  # fmt: skip
    record = cf.ChangeRecord()
    sent: list[contrib.ChangeContribution] = []
    steps: list[corr.Verdict | ChangeEvent] = [*events, corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=1),
                                               corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=2)]  # fmt: skip
    for step in steps:
        record = cf.with_verdict(record, step) if isinstance(step, corr.Verdict) else cf.with_change_event(record, step)
        record, out = contrib.change_contributions(record)
        sent.extend(out)
    final = {c.service: c.facts for c in sent}
    shuffled = [sent[i % len(sent)] for i in order] + [sent[i % len(sent)] for i in repeats] + sent
    random.Random(len(order)).shuffle(shuffled)
    joined: dict[str, cf.ChangeFacts] = {}
    for c in shuffled:
        joined[c.service] = c.facts if c.service not in joined else joined[c.service].join(c.facts)
    assert {s: f.member(s, "unknown") for s, f in joined.items()} == {
        s: f.member(s, "unknown") for s, f in final.items()
    }
    assert not any(f.member(s, "unknown").present for s, f in joined.items())  # canceled at the end: counts nowhere


def test_slots() -> None:
    assert corr.slots_between(T0 - timedelta(minutes=60), T0 + timedelta(minutes=5)) == [
        "2026-11-01T11",
        "2026-11-01T12",
    ]
    assert corr.slot_of(T0) == "2026-11-01T12"


# --- property: streaming decisions equal the batch recomputation ----------------------------------

SERVICES = ["checkout", "search"]
ENVS = ["prod", "staging"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[AlertEvent], list[ChangeEvent]]:
    alerts: list[AlertEvent] = []
    for n in range(draw(st.integers(1, 4))):
        labels = {"service": draw(st.sampled_from(SERVICES)), "env": draw(st.sampled_from(ENVS))}
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["open", "resolve", "reopen", "heartbeat"]))
            minute = draw(st.integers(-90, 90))
            alerts.append(alert(action, minute, key=f"i{n}", labels=labels))
    changes: list[ChangeEvent] = []
    for n in range(draw(st.integers(1, 5))):
        for _ in range(draw(st.integers(1, 3))):
            labels = {"service": draw(st.sampled_from(SERVICES))}
            if draw(st.booleans()):
                labels["env"] = draw(st.sampled_from(ENVS))
            status = draw(st.sampled_from(["planned", "processing", "done", "canceled"]))
            changes.append(change(status, draw(st.integers(-120, 60)), key=f"c{n}", labels=labels))
    return alerts, changes


def run_suspects(
    alerts: list[AlertEvent], changes: list[ChangeEvent], rnd: random.Random, verdicts: list[corr.Verdict] | None = None
) -> dict[str, Any]:
    """Folds both sides as the worker does and delivers every snapshot to every incident's suspects
    state in a random interleaving, with duplicates; returns the latest published record per pair
    (and collects the verdicts sent to the change fold into `verdicts`)."""
    states: dict[str, AggregateState] = {}
    messages: list[tuple[str, corr.IncidentSide | chg.Change]] = []
    for event in alerts:
        applied = apply(states.get(event.aggregate_id, AggregateState()), event)
        states[event.aggregate_id] = applied.state
        if applied.after is not None:
            messages.append((event.aggregate_id, corr.incident_side(applied.after, 3600, 300)))
    snapshots: dict[str, chg.Change] = {}
    for event in changes:
        snapshots[event.change_id] = chg.join(snapshots.get(event.change_id), chg.change_of(event))
        for aggregate_id in states:
            messages.append((aggregate_id, snapshots[event.change_id]))
    delivered = messages + [rnd.choice(messages) for _ in range(len(messages) // 3)]
    rnd.shuffle(delivered)
    suspects: dict[str, corr.Suspects] = {}
    published: dict[tuple[str, str], Any] = {}
    for aggregate_id, item in delivered:
        state = suspects.get(aggregate_id, corr.Suspects())
        if isinstance(item, corr.IncidentSide):
            outcome = corr.with_incident(state, item, RULES)
        else:
            outcome = corr.with_change(state, item, RULES)
        suspects[aggregate_id] = outcome.state
        for record in outcome.published:
            published[(record.aggregate_id, record.change_id)] = record.model_dump(mode="json")
        incident = outcome.state.incident
        for pair in outcome.flipped if verdicts is not None else ():
            verdicts.append(corr.Verdict(aggregate_id=aggregate_id, change_id=pair.record.change_id, flips=pair.flips,
                                         restored=incident.restored if incident is not None else None))  # fmt: skip
    return published


def recomputed(alerts: list[AlertEvent], changes: list[ChangeEvent]) -> tuple[list[Any], list[Any]]:
    """The oracle's incidents and changes from all the events, each aggregate and change apart."""
    by_aggregate: dict[str, list[AlertEvent]] = {}
    for event in alerts:
        by_aggregate.setdefault(event.aggregate_id, []).append(event)
    by_change: dict[str, list[ChangeEvent]] = {}
    for event in changes:
        by_change.setdefault(event.change_id, []).append(event)
    incidents = [i for events in by_aggregate.values() if (i := recompute_incident(events)) is not None]
    return incidents, [recompute_change(e) for e in by_change.values()]


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_live_correlations_equal_the_batch_recomputation(
    history: tuple[list[AlertEvent], list[ChangeEvent]], rnd: random.Random
) -> None:
    alerts, changes = history
    published = run_suspects(alerts, changes, rnd)
    live = {pair: {k: r[k] for k in ("delta_seconds", "matched_labels", "score", "rank")}
            for pair, r in published.items() if not r["retracted"]}  # fmt: skip
    incidents, folded = recomputed(alerts, changes)
    assert live == recompute_correlations(incidents, folded)


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_failed_deployment_recovery_equals_the_batch_recomputation(
    history: tuple[list[AlertEvent], list[ChangeEvent]], rnd: random.Random
) -> None:
    """Verdicts (liveness and the incident's resolution) and change events reach the change fold in any
    order, with duplicates: a change recovers when the last of its live correlated incidents resolved,
    is withdrawn when a correlation is retracted or an incident reopens, and moves when it resolves again."""
    alerts, changes = history
    verdicts: list[corr.Verdict] = []
    run_suspects(alerts, changes, rnd, verdicts)
    items: list[corr.Verdict | ChangeEvent] = [*verdicts, *changes, *(rnd.choice(verdicts) for _ in verdicts[:3])]
    rnd.shuffle(items)
    records: dict[str, cf.ChangeRecord] = {}
    for item in items:
        record = records.get(item.change_id, cf.ChangeRecord())
        if isinstance(item, corr.Verdict):
            records[item.change_id] = cf.with_verdict(record, item)
        else:
            records[item.change_id] = cf.with_change_event(record, item)
    got = {}
    for change_id, record in records.items():
        facts = record.facts
        if facts is not None and facts.change.counted and facts.recovered_at is not None:
            got[change_id] = (facts.recovered_at, facts.recovery_seconds)
    incidents, folded = recomputed(alerts, changes)
    assert got == recompute_recovery(incidents, folded, recompute_correlations(incidents, folded))


def test_a_reopened_incident_withdraws_the_recovery_until_it_resolves_again() -> None:
    record = cf.with_change_event(cf.ChangeRecord(), change("done", 0, labels={"service": "a"}))
    at = T0 + timedelta(minutes=30)
    for version, resolved_at, expected in ((2, at, 1800.0), (3, None, None), (4, at + timedelta(minutes=30), 3600.0)):
        restored = corr.Restored(version=version, resolved_at=resolved_at)
        record = cf.with_verdict(record, corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=1,
                                                        restored=restored))  # fmt: skip
        assert record.facts is not None and record.facts.recovery_seconds == expected
    # an older copy changes nothing; a retraction withdraws it
    stale = corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=1,
                         restored=corr.Restored(version=3, resolved_at=None))  # fmt: skip
    assert cf.with_verdict(record, stale) == record
    retracted = cf.with_verdict(record, corr.Verdict(aggregate_id="x:1", change_id="ship:deploy-1", flips=2))
    assert retracted.facts is not None and retracted.facts.recovered_at is None
    assert not retracted.facts.recovery("a", "unknown").present


def test_lead_time_is_change_time_minus_the_earliest_commit_and_files_in_the_change_series() -> None:
    record = cf.ChangeRecord()
    for event in (change("processing", 10, labels={"service": "a", "env": "prod"}, committed_minute=-20),
                  change("done", 30, labels={"service": "a", "env": "prod"}, committed_minute=-50),
                  change("planned", 0, labels={"service": "a", "env": "prod"})):  # fmt: skip
        record = cf.with_change_event(record, event)
    record, [contribution] = contrib.change_contributions(record)
    member = contribution.facts.member("a", "prod")
    assert member.lead_seconds == 60 * 60.0  # first processing (10) - earliest commit (-50)
    entry = member.entry()
    assert entry is not None and entry[1].seconds == 3600.0
    plain = cf.with_change_event(cf.ChangeRecord(), change("done", 5, key="no-commit", labels={"service": "a"}))
    assert contrib.change_contributions(plain)[1][0].facts.member("a", "unknown").lead_seconds is None
