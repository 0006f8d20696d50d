"""Metric series: idempotent contributions, retraction on moves, and sums equal to a batch recomputation."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain import contributions as contrib
from incidentflow.domain import metrics, sketch
from incidentflow.domain.aggregate import AggregateState, apply
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import project
from incidentflow.domain.records import MetricRow
from incidentflow.domain.report import report as report_of
from incidentflow.runtime.packed import Record
from incidentflow.stream import series as stream_series
from incidentflow.stream.series import Days
from incidentflow.topics import Topics
from tests.factories import T0, DictTable, FakeContext, alert, record
from tests.oracle import incident_dict, recompute_incident, recompute_mttr, recompute_open


@dataclass
class Series:
    """One series as the series stage (stream/series.py) left it in its tables."""

    name: str
    tables: dict[str, DictTable]

    @property
    def index(self) -> metrics.SeriesIndex:
        return metrics.SeriesIndex.model_validate_json(self.tables["series-index"][self.name.encode()])

    @property
    def days(self) -> Days:
        return Days(self.tables["series-days"])

    def mttr(self, now: datetime, window: timedelta) -> tuple[int, float | None]:
        days = [
            metrics.Day(on=day, figures=self.days.figures(self.name, day),
                        entries=lambda day=day: self.days.entries(self.name, day))  # type: ignore[misc]
            for day in self.index.days
        ]  # fmt: skip
        totals = metrics.totals(days, now, window)
        return totals.count, totals.mean_seconds

    def figures(self, day: date) -> metrics.DayFigures:
        """The day's figures, checked against its entries."""
        kept = [e.seconds or 0.0 for e in self.days.entries(self.name, day)]
        found = self.days.figures(self.name, day)
        assert (found.count, found.max_seconds) == (len(kept), max(kept, default=0.0))
        assert abs(found.sum_microseconds / 1e6 - sum(kept)) < 1e-6
        return found


def run(deliveries: list[AlertEvent], rnd: random.Random) -> dict[str, Series]:
    """Fold deliveries per aggregate and feed every contribution (some twice, shuffled per series) to the
    series stage, in batches of any size."""
    states: dict[str, AggregateState] = {}
    per_series: dict[str, list[contrib.IncidentContribution]] = {}
    for event in deliveries:
        applied = apply(states.get(event.aggregate_id, AggregateState()), event)
        states[event.aggregate_id] = applied.state
        if applied.changed and applied.after is not None:
            for c in contrib.contributions(applied.before, applied.after):
                per_series.setdefault(c.series, []).append(c)
    names = Topics("t")
    tables = {name: DictTable() for name in stream_series.TABLES}
    context = FakeContext()
    stage = stream_series.Series(context, names, tables)  # type: ignore[arg-type]  # dicts for tables
    records = []
    for key, items in per_series.items():
        replayed = items + [rnd.choice(items) for _ in range(len(items) // 2)]  # at-least-once redelivery
        records += [(key, c) for c in replayed]
    batch: list[Record] = []
    for offset, (key, c) in enumerate(records):
        batch.append(record(names.contributions, key, c.model_dump_json(), offset=offset))
        if rnd.random() < 0.3:
            asyncio.run(context.run(stage, batch))
            batch = []
    asyncio.run(context.run(stage, batch))
    return {key: Series(key, tables) for key in per_series}


@st.composite
def histories(draw: st.DrawFn) -> list[AlertEvent]:
    events = []
    for agg in range(draw(st.integers(1, 8))):
        service = draw(st.sampled_from(["api", "db", None]))
        for i in range(draw(st.integers(1, 6))):
            # an environment under any of its three label names, or none; it may change between events
            env = draw(st.sampled_from([{}, {"env": "prod"}, {"environment": "staging"},
                                        {"deployment.environment.name": "prod"}, {"env": "prod", "environment": "x"}]))  # fmt: skip
            events.append(
                alert(
                    draw(st.sampled_from(["open", "resolve", "reopen", "heartbeat"])),
                    draw(st.integers(0, 60 * 24 * 3)),
                    key=f"k{agg}",
                    event_id=f"k{agg}-{i}",
                    severity=draw(st.sampled_from([None, "critical", "low"])),
                    labels=({"service": service} if service else {}) | env,
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
            (s.index.service, s.index.env, s.index.severity): mean
            for s in series.values()
            for _, mean in [s.mttr(now, window)]
            if mean is not None
        }
        expected = recompute_mttr(final, now, window)
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            assert abs(got[k] - v) < 1e-6
    for s in series.values():
        for day in s.index.days:
            s.figures(day)
    opened = {(s.index.service, s.index.env, s.index.severity): s.index.open for s in series.values() if s.index.open}
    assert opened == recompute_open(final)


def test_a_reopen_withdraws_the_earlier_resolution_until_it_resolves_again() -> None:
    events = [alert("open", 0, severity="high"), alert("resolve", 30, severity="high"), alert("reopen", 60)]
    series = run(events[:2], random.Random(1))
    assert series["mttr|unknown|unknown|high"].mttr(T0 + timedelta(hours=2), timedelta(days=1)) == (1, 1800.0)
    series = run(events, random.Random(1))
    assert series["mttr|unknown|unknown|high"].mttr(T0 + timedelta(hours=2), timedelta(days=1)) == (0, None)
    assert series["mttr|unknown|unknown|high"].index.open == 1


def test_severity_rise_moves_the_incident_to_its_new_series() -> None:
    events = [alert("open", 0, severity="low"), alert("open", 5, severity="critical")]
    series = run(events, random.Random(1))
    assert series["mttr|unknown|unknown|low"].index.open == 0
    assert series["mttr|unknown|unknown|critical"].index.open == 1


def test_daily_bucket_is_additive() -> None:
    events = [
        alert("open", 0, key="a", event_id="a1"), alert("resolve", 10, key="a", event_id="a2"),
        alert("open", 0, key="b", event_id="b1"), alert("resolve", 40, key="b", event_id="b2"),
    ]  # fmt: skip
    series = run(events, random.Random(1))
    figures = series["mttr|unknown|unknown|unknown"].figures(T0.date())
    assert (figures.count, figures.sum_microseconds, figures.max_seconds) == (2, 3_000_000_000, 2400.0)
    assert incident_dict(None) is None


def test_day_figures_sum_exactly_and_keep_the_longest() -> None:
    def r(seconds: float) -> metrics.Entry:
        return metrics.Entry(at=T0, seconds=seconds)

    day = metrics.DayFigures().entered(r(600.0)).entered(r(2400.0)).entered(r(0.1)).entered(r(0.2))
    assert (day.count, day.sum_microseconds, day.max_seconds) == (4, 3_000_300_000, 2400.0)


def test_change_day_counts_count_entries_and_failed_ones() -> None:
    failed = metrics.Entry(at=T0, failed=True)
    fine = metrics.Entry(at=T0, failed=False)
    day = metrics.DayFigures().entered(failed).entered(fine).entered(failed).left(fine)
    assert (day.count, day.failed, day.sum_microseconds) == (2, 2, 0)


def test_a_window_counts_whole_days_by_their_figures_and_reads_the_resolutions_of_cut_days() -> None:
    read: list[date] = []

    def day(on: date, *resolved: tuple[datetime, float]) -> metrics.Day:
        found = [metrics.Entry(at=at, seconds=seconds) for at, seconds in resolved]
        figures = metrics.DayFigures()
        for resolution in found:
            figures = figures.entered(resolution)
        return metrics.Day(on=on, figures=figures, entries=lambda: read.append(on) or found)  # type: ignore[func-returns-value]

    midnight = datetime.combine(T0.date(), time(), tzinfo=UTC)
    yesterday, today = (midnight - timedelta(days=1)).date(), midnight.date()
    days = [
        day(yesterday, (midnight - timedelta(hours=20), 100.0), (midnight - timedelta(hours=2), 300.0)),
        day(today, (midnight + timedelta(hours=1), 600.0), (midnight + timedelta(hours=7), 50.0)),
    ]
    # At 06:00 the one-day window starts yesterday at 06:00 (04:00 is out, 22:00 in) and ends now (07:00 is out).
    cut = metrics.totals(days, midnight + timedelta(hours=6), timedelta(days=1))
    assert cut.mean_seconds == 450.0
    assert (cut.quantile(0.0), cut.quantile(1.0)) == (pytest.approx(300.0, rel=0.01), pytest.approx(600.0, rel=0.01))
    assert sorted(read) == [yesterday, today]
    read.clear()
    assert metrics.totals(days[:1], midnight + timedelta(days=1), timedelta(days=3)) == metrics.Totals(
        2, 400_000_000, 0, days[0].figures.sketch
    )
    assert read == []  # yesterday lies wholly inside the window: its figures are enough


def test_window_days_cover_the_trailing_window() -> None:
    now = T0 + timedelta(hours=3)
    assert metrics.window_days(now, timedelta(days=1)) == [(T0 - timedelta(days=1)).date(), T0.date()]


def test_stale_or_repeated_contributions_change_nothing() -> None:
    member = metrics.Member(version=3, present=True, status="open")
    c = contrib.IncidentContribution(service="a", env="prod", severity="b", aggregate_id="x", member=member)
    first = c.step(None)
    assert first is not None and first.open_delta == 1
    assert c.step(first.member) is None
    stale = metrics.Member(version=2, present=True, status="resolved", resolved_at=T0, time_to_restore_seconds=1.0)
    assert c.model_copy(update={"member": stale}).step(first.member) is None


def test_a_change_outside_the_metric_view_contributes_nothing() -> None:
    opened = project([alert("open", 0, severity="high", labels={"service": "api"})])
    beat = project([alert("open", 0, severity="high", labels={"service": "api"}), alert("heartbeat", 5, title="t")])
    assert opened is not None and beat is not None and opened != beat
    assert contrib.contributions(opened, beat) == []


def test_report_sums_daily_rows_per_service_and_env_within_the_range() -> None:
    d = date(2026, 11, 10)

    def mttr(service: str, on: date, *seconds: float, env: str = "prod") -> MetricRow:
        figures = metrics.DayFigures()
        for value in seconds:
            figures = figures.entered(metrics.Entry(at=T0, seconds=value))
        return MetricRow(metric="mttr", service=service, env=env, severity="high", day=on.isoformat(),
                         count=figures.count, sum_seconds=figures.sum_microseconds / 1e6,
                         max_seconds=figures.max_seconds, sketch=figures.sketch)  # fmt: skip

    def changes(service: str, on: date, count: int, failed: int, *leads: float) -> MetricRow:
        figures = metrics.DayFigures()
        for value in leads:
            figures = figures.entered(metrics.Entry(at=T0, seconds=value))
        return MetricRow(metric="changes", service=service, env="prod", severity="-", day=on.isoformat(),
                         changes=count, failed_changes=failed, lead_times=len(leads), sketch=figures.sketch,
                         sum_seconds=figures.sum_microseconds / 1e6, max_seconds=figures.max_seconds)  # fmt: skip

    def recovery(service: str, on: date, *seconds: float) -> MetricRow:
        row = mttr(service, on, *seconds)
        return row.model_copy(update={"metric": "recovery", "severity": "-"})

    rows = [
        recovery("checkout", d, 1800.0, 7200.0),
        recovery("deploys-only", d + timedelta(days=1), 600.0),  # recovered in the range, changed before it
        mttr("checkout", d, 100.0, 500.0),
        mttr("checkout", d + timedelta(days=1), 900.0),  # another day: still summed
        mttr("checkout", d + timedelta(days=5), 10.0),  # outside the range
        changes("checkout", d, 4, 1, 7200.0, 60.0),
        changes("search", d + timedelta(days=1), 2, 0),
        mttr("empty", d),  # a day whose resolutions were all withdrawn
        mttr("checkout", d, 60.0, env="staging"),  # another environment: its own entry
    ]
    found = {r.service: r for r in report_of(rows, d, d + timedelta(days=1)) if r.env == "prod"}
    assert sorted(found) == ["checkout", "deploys-only", "search"]
    assert (found["checkout"].recoveries, found["checkout"].recovery_mean_seconds) == (2, 4500.0)
    assert found["checkout"].recovery_median_seconds == pytest.approx(1800.0, rel=0.01)
    assert found["checkout"].recovery_max_seconds == 7200.0
    assert (found["deploys-only"].recoveries, found["deploys-only"].changes) == (1, 0)
    # DORA levels: 2 deploys a day, lead time median 60 s, 25% failed, restore median 500 s, recovery 30 min
    levels = [found["checkout"].deployment_frequency_level, found["checkout"].lead_time_level,
              found["checkout"].change_failure_rate_level, found["checkout"].time_to_restore_level,
              found["checkout"].recovery_level]  # fmt: skip
    assert levels == ["elite", "elite", "high", "elite", "elite"]  # 25%: nearest 2024's high (20%)
    old = {r.service: r for r in report_of(rows, d, d + timedelta(days=1), benchmark="2023") if r.env == "prod"}
    assert old["checkout"].change_failure_rate_level == "low" and old["checkout"].benchmark == "2023"
    assert found["search"].lead_time_level is None and found["search"].change_failure_rate_level == "elite"
    assert found["checkout"].incidents == 3
    assert found["checkout"].mttr_seconds == 500.0
    assert found["checkout"].median_seconds == pytest.approx(500.0, rel=0.01)
    assert found["checkout"].p90_seconds == pytest.approx(500.0, rel=0.01)  # rank floor(0.9 * 2) = 1 of 3
    assert found["checkout"].max_seconds == 900.0
    assert (found["checkout"].changes, found["checkout"].failed_changes) == (4, 1)
    assert found["checkout"].change_failure_rate == 0.25
    assert found["checkout"].deployments_per_day == 2.0  # 4 changes over the 2 days of the range
    assert found["checkout"].lead_times == 2  # the other two have no commit time: counted apart
    assert found["checkout"].lead_time_median_seconds == pytest.approx(60.0, rel=0.01)
    assert (found["checkout"].lead_time_mean_seconds, found["checkout"].lead_time_max_seconds) == (3630.0, 7200.0)
    # a quantile is never shown above the exact longest (a bucket's value may lie up to 1% above it)
    [one] = report_of([changes("one", d, 1, 0, 5700.0)], d, d)  # its bucket's value: 5,739.85 s
    assert one.lead_time_median_seconds == one.lead_time_p90_seconds == one.lead_time_max_seconds == 5700.0
    assert found["search"].lead_times == 0 and found["search"].lead_time_median_seconds is None
    assert found["search"].incidents == 0 and found["search"].mttr_seconds is None
    assert found["search"].median_seconds is None and found["search"].change_failure_rate == 0.0
    assert [r.service for r in report_of(rows, d, d + timedelta(days=1), service="search")] == ["search"]
    [staging] = report_of(rows, d, d + timedelta(days=1), env="staging")
    assert (staging.service, staging.incidents, staging.mttr_seconds) == ("checkout", 1, 60.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=200), st.data())
def test_the_sketch_of_any_days_and_withdrawals_gives_quantiles_within_one_percent(
    microseconds: list[int], data: st.DataObject
) -> None:
    """Durations filed on days, some withdrawn again: the figures' sketches summed give every quantile
    of what is left within 1% of the exact nearest-rank value."""
    withdrawn = data.draw(st.sets(st.integers(0, len(microseconds) - 1)))
    days = [metrics.DayFigures() for _ in range(3)]
    for n, value in enumerate(microseconds):
        days[n % 3] = days[n % 3].entered(metrics.Entry(at=T0, seconds=value / 1e6))
    for n in sorted(withdrawn):
        days[n % 3] = days[n % 3].left(metrics.Entry(at=T0, seconds=microseconds[n] / 1e6))
    kept = sorted(v for n, v in enumerate(microseconds) if n not in withdrawn)
    merged = sketch.merged(day.sketch for day in days)
    assert sum(merged.values()) == len(kept)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        got = sketch.quantile(merged, q)
        if not kept:
            assert got is None
            continue
        exact = kept[int(q * (len(kept) - 1))] / 1e6
        assert got is not None and abs(got - exact) <= 0.01 * exact + 1e-12


def test_the_open_count_takes_each_change_once() -> None:
    """A record handled again after its index was written and its member was not counts its open incident once."""
    index = metrics.SeriesIndex(metric="mttr", service="api", env="prod", severity="high")
    index = metrics.with_day(index, None, +1, 7)
    index = metrics.with_day(index, None, +1, 7)  # the same record, handled again
    assert index.open == 1
    index = metrics.with_day(index, T0.date(), -1, 9)
    assert (index.open, index.days) == (0, (T0.date(),))


def test_the_report_text_shows_the_five_keys_with_rework_and_rollbacks() -> None:
    from incidentflow.tools.report import render

    d = date(2026, 11, 2)
    row = MetricRow(metric="changes", service="search", env="prod", severity="-", day=d.isoformat(), changes=4,
                    failed_changes=1, reworked_changes=2, rollbacks=1)  # fmt: skip
    text = render(report_of([row], d, d), d, d)
    assert "levels: DORA 2024 clusters" in text
    for key in ("deployment frequency", "lead time for changes", "change failure rate", "deployment rework rate",
                "time to restore", "failed deployment recovery"):  # fmt: skip
        assert any(line.strip().startswith(key) for line in text.splitlines()), key
    rework = next(line for line in text.splitlines() if line.strip().startswith("deployment rework rate"))
    assert "2/4" in rework and "50.0%" in rework
    assert next(line for line in text.splitlines() if "of which rollbacks" in line).split() == [
        "of",
        "which",
        "rollbacks",
        "1",
    ]
    assert "levels: DORA 2023 clusters" in render(report_of([row], d, d, benchmark="2023"), d, d, "2023")
