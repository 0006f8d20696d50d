"""`json_of` and `from_json` write and read exactly what pydantic's model methods do."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from incidentflow.domain import aggregate
from incidentflow.domain.base import from_json, json_of
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import Episode, Incident
from tests.factories import alert


def test_json_of_and_from_json_are_the_model_methods_without_their_wrappers() -> None:
    event = alert("open", 0, labels={"service": "api", "région": "eu"}, title="disk \u2603 full")
    state = aggregate.apply(aggregate.AggregateState(), event).state
    for model in (event, state, state.incident):
        assert model is not None
        assert json_of(model) == model.model_dump_json().encode()
        assert from_json(type(model), json_of(model)) == model
    with pytest.raises(ValidationError):
        from_json(AlertEvent, b'{"event_id": ""}')


def test_canonical_events_take_any_offset_and_what_the_worker_derives_is_in_utc() -> None:
    """A producer's instant with an offset is read as the same instant in UTC, and everything derived
    from it (the incident, its state) is written and read back with `Z`; an instant the worker reads
    back with another offset is invalid, never silently shifted."""
    original = alert("open", 0)
    shifted = json_of(original).replace(b'Z"', b'+02:00"', 1)
    assert b'"occurred_at":"' in shifted and b"+02:00" in shifted
    event = from_json(AlertEvent, shifted)
    assert event.occurred_at == original.occurred_at - timedelta(hours=2)
    assert event.occurred_at.utcoffset() == timedelta(0)
    incident = aggregate.apply(aggregate.AggregateState(), event).state.incident
    assert incident is not None
    written = json_of(incident)
    assert b"+02:00" not in written
    assert from_json(Incident, written) == incident
    assert from_json(Incident, written).opened_at == event.occurred_at
    with pytest.raises(ValidationError, match="offset of 0"):
        from_json(Incident, written.replace(b'Z"', b'+02:00"', 1))
    with pytest.raises(ValidationError, match="offset of 0"):
        Episode(opened_at=datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=2))))
