"""The trust suite's traffic: deterministic, rich, and meaning what the vendors' formats mean.

The generator writes each webhook from what it means; the adapters read it back. Written apart,
they must agree on every canonical field but the event id (the generator numbers its events;
the adapters derive ids from content, which matters only for equal event times, never generated).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from incidentflow import sources
from incidentflow.domain.events import AlertEvent, PushEvent
from tests.scenario import deliveries
from tests.trust.expected import expect
from tests.trust.traffic import FLEET, START, elven_events, generate, span_days

IGNORED = {"event_id", "received_at", "request_id"}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_the_same_seed_gives_the_same_traffic() -> None:
    assert generate(7, 2000) == generate(7, 2000)
    assert deliveries(generate(7, 2000), seed=1) == deliveries(generate(7, 2000), seed=1)
    assert generate(7, 2000) != generate(8, 2000)


def test_every_webhook_means_what_the_adapter_reads() -> None:
    webhooks = generate(3, 6000)
    received = {w.webhook_id: NOW + timedelta(seconds=i) for i, w in enumerate(webhooks) if w.webhook_id}
    elven = iter(elven_events(webhooks, received))
    for i, w in enumerate(webhooks):
        integration = FLEET[w.integration]
        ctx = sources.Context(integration=w.integration, source=integration.source,
                              received_at=received.get(w.webhook_id or "", NOW), request_id=f"r{i}",
                              labels=integration.labels, default_severity=integration.default_severity,  # type: ignore[arg-type]
                              idempotency_key=w.webhook_id, headers={k.lower(): v for k, v in w.headers})  # fmt: skip
        read = [e.model_dump(exclude=IGNORED) for e in sources.parse(integration.source, w.body, ctx)]
        meant = [e.model_dump(exclude=IGNORED) for e in (w.events or (() if w.ignored else (next(elven),)))]
        assert read == meant, (w.integration, w.body)


def test_the_traffic_has_everything_the_suite_must_survive() -> None:
    webhooks = generate(11, 20000)
    sources_seen = Counter(FLEET[w.integration].source for w in webhooks)
    assert set(sources_seen) == {i.source for i in FLEET.values()}, sources_seen
    assert any(w.ignored for w in webhooks)  # PagerDuty event types answered 204
    repeated = Counter(repr(w.body) for w in webhooks if w.integration == "alertmanager")
    assert any(n > 1 for n in repeated.values())  # Alertmanager's repeats, besides the deliveries' duplicates
    events = [e for w in webhooks for e in w.events]
    actions = Counter(e.action for e in events if isinstance(e, AlertEvent))
    assert {"open", "resolve", "reopen", "heartbeat"} <= set(actions), actions
    received = {w.webhook_id: NOW + timedelta(seconds=i) for i, w in enumerate(webhooks) if w.webhook_id}
    expected = expect(webhooks, received)
    assert expected.events >= 0.5 * 20000 * 0.5
    assert any(i["reopen_count"] for i in expected.incidents.values())
    assert any(i["status"] == "open" for i in expected.incidents.values())
    assert len(expected.correlations) >= 300, len(expected.correlations)
    assert any(c["rank"] > 1 for c in expected.correlations.values())
    assert sum(failed for _, failed, _, _ in expected.change_rows.values()) >= 100
    rollbacks = sum(rollbacks for *_, rollbacks in expected.change_rows.values())
    reworked = sum(reworked for _, _, reworked, _ in expected.change_rows.values())
    changes = sum(changes for changes, *_ in expected.change_rows.values())
    assert rollbacks >= 50 and rollbacks < reworked < changes, (rollbacks, reworked, changes)
    assert len(expected.mttr_rows) >= 50
    # late events: some event happens before one its sender sent earlier
    late = sum(
        1 for w in webhooks for a, b in zip(w.events, w.events[1:], strict=False) if b.occurred_at < a.occurred_at
    )
    by_aggregate: dict[str, list[datetime]] = {}
    for e in events:
        if isinstance(e, AlertEvent):
            by_aggregate.setdefault(e.aggregate_id, []).append(e.occurred_at)
    assert late + sum(1 for ts in by_aggregate.values() if ts != sorted(ts)) > 100


def test_traffic_from_a_later_start_keeps_its_shape_later_in_time() -> None:
    later = START + timedelta(days=span_days(2000))
    first, second = generate(7, 2000), generate(8, 2000, start=later)
    assert len(first) == pytest.approx(len(second), rel=0.1)
    times = [event.occurred_at for w in second for event in w.events if not isinstance(event, PushEvent)]
    # one event in five of an aggregate may come before its predecessor by up to 15 minutes
    assert min(times) >= later - timedelta(minutes=15) and max(times) > later + timedelta(days=span_days(2000) - 1)
