"""The stored aggregate state: incremental application, duplicates, and the compaction horizon."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain.aggregate import CLOSED, DEFAULT_LIMITS, AggregateState, Limits, Stored, apply
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import project
from tests.factories import alert
from tests.unit.domain.test_incident import event_sets


def deliver(events: list[AlertEvent], limits: Limits = DEFAULT_LIMITS) -> tuple[AggregateState, list[str]]:
    state = AggregateState()
    outcomes = []
    for event in events:
        applied = apply(state, event, limits)
        state = applied.state
        outcomes.append(applied.outcome)
    return state, outcomes


@settings(max_examples=300, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_projection(events: list[AlertEvent], rnd: random.Random) -> None:
    delivered = events + events[: len(events) // 2]
    rnd.shuffle(delivered)
    state, _ = deliver(delivered)
    assert state.incident == project(events)


def test_duplicate_is_reported_and_changes_nothing() -> None:
    state, outcomes = deliver([alert("open", 0), alert("resolve", 5), alert("open", 0)])
    assert outcomes == ["applied", "applied", "duplicate"]
    assert state.incident is not None and state.incident.event_count == 2


def test_state_stays_bounded_and_in_order_history_still_folds_exactly() -> None:
    events = [alert("heartbeat" if i % 2 else "open", i, event_id=f"e{i}") for i in range(100)]
    events.append(alert("resolve", 100, event_id="end"))
    state, outcomes = deliver(events, Limits(max_events=16, max_compacted_ids=32))
    assert set(outcomes) == {"applied"}
    assert len(state.events) <= 16 and len(state.compacted_ids) <= 32
    assert state.incident == project(events)


def test_events_older_than_the_horizon_are_refused_not_misapplied() -> None:
    events = [alert("open", i, event_id=f"e{i}") for i in range(1, 40)]
    state, _ = deliver(events, Limits(max_events=8, max_compacted_ids=64))
    late = apply(state, alert("resolve", 0.5, event_id="late"), Limits(max_events=8))
    again = apply(state, events[0], Limits(max_events=8))
    assert (late.outcome, again.outcome) == ("too_late", "duplicate")
    assert late.state == state


def test_a_flapping_aggregate_and_resolves_waiting_for_an_open_keep_the_state_bounded() -> None:
    limits = Limits(max_events=16, max_compacted_ids=32)

    def stored_size(flaps: int, waiting: int) -> int:
        events = [alert("resolve", i / 1000 - 1, event_id=f"w{i}", title=f"t{i}") for i in range(waiting)]
        for i in range(flaps):
            events += [alert("open", i, event_id=f"o{i}"), alert("resolve", i + 0.5, event_id=f"r{i}")]
        state, _ = deliver(events, limits)
        assert state.incident == project(events)
        return len(state.model_dump_json())

    # Ten times the history: only wider numbers (versions, counters) in the stored state.
    assert stored_size(flaps=2000, waiting=500) < 1.05 * stored_size(flaps=200, waiting=50)


def test_a_state_stored_with_the_waiting_resolves_listed_still_reads_and_folds_the_same() -> None:
    waiting = [alert("resolve", 1, title="first", labels={"service": "db"}), alert("resolve", 2, severity="low")]
    state, _ = deliver(waiting)
    stored = state.model_dump(mode="json")
    for fold in (stored["snapshot"], stored["current"]):  # the shape versions before 0.2 wrote
        fold["pending"] = [event.model_dump(mode="json") for event in waiting] if fold["pending"] else []
    old = AggregateState.model_validate_json(json.dumps(stored))
    assert old == state
    opened = alert("open", 0)
    assert apply(old, opened).state.incident == project([*waiting, opened])


@settings(max_examples=400, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False), st.integers(min_value=0, max_value=2), st.booleans())
def test_the_stored_state_applies_as_the_whole_one_and_writes_the_same_json(
    events: list[AlertEvent], rnd: random.Random, copies: int, reload: bool
) -> None:
    delivered = events + [rnd.choice(events) for _ in range(copies * len(events))]
    rnd.shuffle(delivered)
    limits = Limits(max_events=rnd.choice([4, 8, 256]), max_compacted_ids=8)
    state, stored = AggregateState(), Stored.load(None)
    for event in delivered:
        applied = apply(state, event, limits)
        stored, outcome = stored.apply(event, limits)
        assert outcome == applied.outcome
        state = applied.state
        assert stored.dump() == state.model_dump_json().encode()  # byte for byte: the changelog is unchanged
        assert (stored.incident, stored.since, stored.closed) == (state.incident, state.since, state.closed)
        assert stored.incident_json() == (state.incident.model_dump_json().encode() if state.incident else b"null")
        if reload or rnd.random() < 0.3:  # read back from the store, as a fold does for an aggregate it did not keep
            stored = Stored.load(stored.dump())
    assert Stored.load(stored.dump()).state == state


def test_the_stored_closed_marker_and_an_empty_state_read_as_the_whole_ones() -> None:
    closed = Stored.load(CLOSED.model_dump_json(exclude_defaults=True).encode())
    assert closed.closed and closed.since is None and closed.apply(alert("open", 0))[1] == "too_late"
    assert Stored.load(None).dump() == AggregateState().model_dump_json().encode()
    assert Stored.load(b"{}").state == AggregateState()
