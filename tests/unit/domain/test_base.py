"""`json_of` and `from_json` write and read exactly what pydantic's model methods do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from incidentflow.domain import aggregate
from incidentflow.domain.base import from_json, json_of
from incidentflow.domain.events import AlertEvent
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
