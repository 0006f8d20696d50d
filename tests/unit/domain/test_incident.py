"""The incident fold: lifecycle cases, and order/duplicate independence against the oracle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import MAX_EPISODES, project
from tests.factories import alert
from tests.oracle import incident_dict, recompute_incident

CASES = [
    pytest.param([alert("open", 0), alert("resolve", 30)], "resolved", 1800.0, 0, id="open-resolve"),
    pytest.param([alert("open", 0)], "open", None, 0, id="open-only"),
    pytest.param([alert("resolve", 30), alert("open", 0)], "resolved", 1800.0, 0, id="resolve-arrives-first"),
    pytest.param([alert("open", 0), alert("resolve", 10), alert("reopen", 20), alert("resolve", 25)], "resolved", 900.0, 1, id="reopen"),
    pytest.param([alert("open", 0), alert("resolve", 10), alert("open", 20), alert("resolve", 25)], "resolved", 900.0, 1, id="open-after-close-reopens"),
    pytest.param([alert("open", 0), alert("open", 5), alert("resolve", 10)], "resolved", 600.0, 0, id="open-while-open"),
    pytest.param([alert("open", 0), alert("resolve", 10), alert("resolve", 20)], "resolved", 600.0, 0, id="resolve-while-resolved"),
    pytest.param([alert("heartbeat", 3), alert("resolve", 10)], "resolved", 420.0, 0, id="heartbeat-opens"),
    pytest.param([alert("open", 0), alert("heartbeat", 5), alert("resolve", 10)], "resolved", 600.0, 0, id="heartbeat-refreshes"),
    pytest.param([alert("open", 0), alert("resolve", 10), alert("heartbeat", 15)], "resolved", 600.0, 0, id="heartbeat-after-close"),
    pytest.param([alert("resolve", 0), alert("open", 5)], "resolved", 0.0, 0, id="resolve-before-open-in-time"),
    pytest.param([alert("open", 0), alert("resolve", 10), alert("reopen", 20)], "open", None, 1, id="reopened-is-open"),
]  # fmt: skip


@pytest.mark.parametrize(("events", "status", "seconds", "reopens"), CASES)
def test_lifecycle(events: list[AlertEvent], status: str, seconds: float | None, reopens: int) -> None:
    incident = project(events)
    assert incident is not None
    assert (incident.status, incident.time_to_restore_seconds, incident.reopen_count) == (status, seconds, reopens)
    assert incident_dict(incident) == recompute_incident(events)


def test_only_resolves_publish_nothing() -> None:
    assert project([alert("resolve", 0), alert("resolve", 5)]) is None


def test_severity_is_peak_while_open_and_current_is_latest() -> None:
    incident = project(
        [alert("open", 0, severity="moderate"), alert("open", 1, severity="critical"), alert("open", 2, severity="low")]
    )
    assert incident is not None
    assert (incident.severity, incident.current_severity) == ("critical", "low")


def test_resolved_at_and_episodes() -> None:
    incident = project([alert("open", 0), alert("resolve", 10), alert("reopen", 20), alert("resolve", 25)])
    assert incident is not None
    assert [(e.opened_at.minute, e.resolved_at.minute if e.resolved_at else None) for e in incident.episodes] == [
        (0, 10),
        (20, 25),
    ]
    assert incident.resolved_at == incident.episodes[-1].resolved_at
    assert incident.event_count == incident.version == 4


def test_same_event_id_keeps_the_earlier_delivery() -> None:
    first = alert("open", 0, event_id="same", received_minute=0)
    retry = alert("open", 3, event_id="same", received_minute=3)
    assert project([retry, first]) == project([first, retry]) == project([first])


actions = st.sampled_from(["open", "resolve", "reopen", "heartbeat"])
severities = st.sampled_from([None, "critical", "high", "moderate", "low", "informational"])


@st.composite
def event_sets(draw: st.DrawFn) -> list[AlertEvent]:
    """Distinct events of one aggregate, with time ties, shared ids and sparse details."""
    n = draw(st.integers(min_value=1, max_value=14))
    events = []
    for i in range(n):
        shared = draw(st.booleans()) and i > 0 and draw(st.integers(0, 4)) == 0
        events.append(
            alert(
                draw(actions),
                draw(st.integers(min_value=0, max_value=20)),
                event_id=f"e{i - 1 if shared else i}",
                severity=draw(severities),
                title=draw(st.sampled_from([None, "a", "b"])),
                labels=draw(st.sampled_from([{}, {"service": "db"}, {"service": "api", "env": "prod"}])),
                received_minute=draw(st.integers(min_value=0, max_value=30)),
            )
        )
    return events


@settings(max_examples=400, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False), st.integers(min_value=0, max_value=3))
def test_any_order_and_duplication_folds_the_same(events: list[AlertEvent], rnd: random.Random, copies: int) -> None:
    delivered = events + [rnd.choice(events) for _ in range(copies * len(events))]
    rnd.shuffle(delivered)
    assert project(delivered) == project(events)


@settings(max_examples=400, deadline=None)
@given(event_sets())
def test_fold_agrees_with_batch_recomputation(events: list[AlertEvent]) -> None:
    assert incident_dict(project(events)) == recompute_incident(events)


@pytest.mark.parametrize("flaps", [MAX_EPISODES - 1, MAX_EPISODES, MAX_EPISODES + 1, 3 * MAX_EPISODES + 7])
def test_a_flapping_incident_lists_its_latest_episodes_and_still_counts_every_one(flaps: int) -> None:
    # Odd durations (7.302 s open each time) so that the sum is sensitive to the order of addition.
    events = []
    for i in range(flaps):
        events += [alert("open", i, event_id=f"o{i}"), alert("resolve", i + 0.1217, event_id=f"r{i}")]
    delivered = events + events[::3]
    random.Random(flaps).shuffle(delivered)
    incident = project(delivered)
    assert incident is not None
    assert len(incident.episodes) == min(flaps, MAX_EPISODES)
    assert incident.earlier_episodes == max(0, flaps - MAX_EPISODES)
    assert incident.episodes[-1].opened_at == events[-2].occurred_at
    assert incident.reopen_count == flaps - 1
    every = [(r.occurred_at - o.occurred_at).total_seconds() for o, r in zip(events[::2], events[1::2], strict=True)]
    assert incident.time_to_restore_seconds == sum(every)
    assert incident_dict(incident) == recompute_incident(events)
