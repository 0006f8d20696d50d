"""Every adapter, for any JSON at all, gives canonical events or a PayloadError naming fields — nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidentflow import sources
from incidentflow.domain.events import AlertEvent, ChangeEvent, PushEvent

CTX = sources.Context(integration="fz", source="x", received_at=datetime(2026, 11, 1, tzinfo=UTC), request_id="r")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["alarmed", "resolved", "triggered", "Critical", "Ok", "Done", "2026-11-01T00:00:00Z", "open", "x" * 600,
                     "0001-01-01T00:01:01.0+00:04", "9999-12-31T23:59:59-01:00", "2026-11-01"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = ["type", "id", "date", "ended_date", "action", "external_aggregate_key", "severity", "tags", "title_rule",
        "event_status", "alert_key", "event_time", "labels", "title", "change_key", "change_status", "occurred_at",
        "status", "@alert.type", "@incident.key", "@alert.timestampUtc", "Alert", "Incident", "event_id", "integration",
        "alerts", "fingerprint", "startsAt", "endsAt", "truncatedAlerts", "event", "event_type", "data",
        "deployment_status", "deployment", "repository", "ref", "before", "after", "commits", "deleted", "object_kind",
        "project", "commit_url", "deployment_id", "status_changed_at", "environment"]  # fmt: skip
IGNORING = {"pagerduty", "github", "gitlab"}
EVENT_HEADERS = {"github": ("x-github-event", ["push", "deployment_status", "ping", ""]),
                 "gitlab": ("x-gitlab-event", ["Push Hook", "Deployment Hook", "Job Hook"])}  # fmt: skip
near_valid = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


@pytest.mark.parametrize("source", sorted(sources.ADAPTERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(json_values, near_valid), pick=st.integers(0, 3))
def test_adapter_is_total(source: str, payload: Any, pick: int) -> None:
    ctx = CTX
    if source in EVENT_HEADERS:
        header, names = EVENT_HEADERS[source]
        ctx = replace(CTX, headers={header: names[pick % len(names)]})
    try:
        events = sources.parse(source, payload, ctx)
    except sources.PayloadError as error:
        assert error.errors and all(e.field and e.message for e in error.errors)
        return
    # Only a source that ignores some of its vendor's event types may give none (the gateway answers 204).
    assert events or source in IGNORING
    assert all(isinstance(e, AlertEvent | ChangeEvent | PushEvent) for e in events)
    assert all(e.integration == "fz" for e in events)
