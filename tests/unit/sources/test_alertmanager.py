"""Alertmanager's repeats and redeliveries: any mix of an alert's notifications, in any order and any
number of times, gives the same incident as each notification once."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow import sources
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import project

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alertmanager"
FIRING = json.loads((FIXTURES / "firing.json").read_text())


def notification(status: str, starts: str, ends: str = "0001-01-01T00:00:00Z") -> dict[str, Any]:
    body = copy.deepcopy(FIRING)
    body["status"] = status
    body["alerts"][0].update(status=status, startsAt=starts, endsAt=ends)
    return body


# An alert's life: fires, resolves, fires again (a new startsAt), resolves again.
LIFE = [
    notification("firing", "2026-11-01T10:00:00.5Z"),
    notification("resolved", "2026-11-01T10:00:00.5Z", "2026-11-01T10:12:00Z"),
    notification("firing", "2026-11-01T11:00:00Z"),
    notification("resolved", "2026-11-01T11:00:00Z", "2026-11-01T11:03:30Z"),
]


def events_of(body: dict[str, Any], received: datetime) -> list[AlertEvent]:
    ctx = sources.Context(integration="am", source="alertmanager", received_at=received, request_id=f"r-{received}")
    return [e for e in sources.parse("alertmanager", body, ctx) if isinstance(e, AlertEvent)]


def test_a_repeat_is_the_same_event_whenever_it_is_received() -> None:
    first = events_of(LIFE[0], datetime(2026, 11, 1, 10, 0, 2, tzinfo=UTC))
    repeat = events_of(LIFE[0], datetime(2026, 11, 1, 14, 0, 0, tzinfo=UTC))
    assert [e.event_id for e in first] == [e.event_id for e in repeat]
    resolved = events_of(LIFE[1], datetime(2026, 11, 1, 10, 12, 5, tzinfo=UTC))
    assert resolved[0].event_id == first[0].event_id  # a resolved alert carries the same open
    assert [e.action for e in resolved] == ["open", "resolve"]


@settings(max_examples=200, deadline=None)
@given(deliveries=st.lists(st.sampled_from(range(len(LIFE))), min_size=len(LIFE), max_size=14), data=st.data())
def test_any_mix_of_repeats_and_orders_gives_one_incident_of_two_episodes(deliveries: list[int], data: Any) -> None:
    deliveries = [*range(len(LIFE)), *deliveries]  # each notification at least once
    order = data.draw(st.permutations(deliveries))
    base = datetime(2026, 11, 1, 12, tzinfo=UTC)
    events = [e for n, i in enumerate(order) for e in events_of(LIFE[i], base + timedelta(minutes=n))]
    incident = project(events)
    assert incident is not None
    assert incident.status == "resolved"
    assert [(e.opened_at.isoformat(), e.resolved_at and e.resolved_at.isoformat()) for e in incident.episodes] == [
        ("2026-11-01T10:00:00.500000+00:00", "2026-11-01T10:12:00+00:00"),
        ("2026-11-01T11:00:00+00:00", "2026-11-01T11:03:30+00:00"),
    ]
    assert incident.reopen_count == 1
    assert incident.time_to_restore_seconds == 719.5 + 210
    assert incident.event_count == 4
    assert incident.severity == "critical" and incident.title == "checkout is down"
