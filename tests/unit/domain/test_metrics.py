"""Metric series: idempotent contributions, retraction on moves, and sums equal to a batch recomputation."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain import metrics
from incidentflow.domain.aggregate import AggregateState, apply
from incidentflow.domain.events import AlertEvent
from tests.factories import T0, alert
from tests.oracle import incident_dict, recompute_incident, recompute_mttr, recompute_open


def run(deliveries: list[AlertEvent], rnd: random.Random) -> dict[str, metrics.SeriesState]:
    """Fold deliveries per aggregate and feed every contribution (some twice, shuffled per series) to series."""
    states: dict[str, AggregateState] = {}
    per_series: dict[str, list[metrics.Contribution]] = {}
    for event in deliveries:
        applied = apply(states.get(event.aggregate_id, AggregateState()), event)
        states[event.aggregate_id] = applied.state
        if applied.changed and applied.after is not None:
            for c in metrics.contributions(applied.before, applied.after):
                per_series.setdefault(c.series, []).append(c)
    series: dict[str, metrics.SeriesState] = {}
    for key, items in per_series.items():
        replayed = items + [rnd.choice(items) for _ in range(len(items) // 2)]  # at-least-once redelivery
        state = metrics.SeriesState(service=items[0].service, severity=items[0].severity)
        for c in replayed:
            state, _ = metrics.record(state, c)
        series[key] = state
    return series


@st.composite
def histories(draw: st.DrawFn) -> list[AlertEvent]:
    events = []
    for agg in range(draw(st.integers(1, 8))):
        service = draw(st.sampled_from(["api", "db", None]))
        for i in range(draw(st.integers(1, 6))):
            events.append(
                alert(
                    draw(st.sampled_from(["open", "resolve", "reopen", "heartbeat"])),
                    draw(st.integers(0, 60 * 24 * 3)),
                    key=f"k{agg}",
                    event_id=f"k{agg}-{i}",
                    severity=draw(st.sampled_from([None, "critical", "low"])),
                    labels={"service": service} if service else {},
                )
            )
    return events


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_series_equal_batch_recomputation(events: list[AlertEvent], rnd: random.Random) -> None:
    deliveries = list(events)
    rnd.shuffle(deliveries)
    series = run(deliveries, rnd)

    by_agg: dict[str, list[AlertEvent]] = {}
    for e in events:
        by_agg.setdefault(e.aggregate_id, []).append(e)
    final = [i for i in (recompute_incident(evs) for evs in by_agg.values()) if i is not None]
    now = T0 + timedelta(days=3)
    for window in metrics.WINDOWS.values():
        got = {
            (s.service, s.severity): mean
            for s in series.values()
            for _, mean in [metrics.mttr(s, now, window)]
            if mean is not None
        }
        expected = recompute_mttr(final, now, window)
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            assert abs(got[k] - v) < 1e-6
    opened = {(s.service, s.severity): metrics.open_count(s) for s in series.values() if metrics.open_count(s)}
    assert opened == recompute_open(final)


def test_a_reopen_withdraws_the_earlier_resolution_until_it_resolves_again() -> None:
    events = [alert("open", 0, severity="high"), alert("resolve", 30, severity="high"), alert("reopen", 60)]
    series = run(events[:2], random.Random(1))
    assert metrics.mttr(series["unknown|high"], T0 + timedelta(hours=2), timedelta(days=1)) == (1, 1800.0)
    series = run(events, random.Random(1))
    assert metrics.mttr(series["unknown|high"], T0 + timedelta(hours=2), timedelta(days=1)) == (0, None)
    assert metrics.open_count(series["unknown|high"]) == 1


def test_severity_rise_moves_the_incident_to_its_new_series() -> None:
    events = [alert("open", 0, severity="low"), alert("open", 5, severity="critical")]
    series = run(events, random.Random(1))
    assert metrics.open_count(series["unknown|low"]) == 0
    assert metrics.open_count(series["unknown|critical"]) == 1


def test_daily_bucket_is_additive() -> None:
    events = [
        alert("open", 0, key="a", event_id="a1"), alert("resolve", 10, key="a", event_id="a2"),
        alert("open", 0, key="b", event_id="b1"), alert("resolve", 40, key="b", event_id="b2"),
    ]  # fmt: skip
    series = run(events, random.Random(1))
    assert metrics.bucket(series["unknown|unknown"], T0.date()) == metrics.Bucket(
        count=2, sum_seconds=3000.0, max_seconds=2400.0
    )
    assert incident_dict(None) is None
