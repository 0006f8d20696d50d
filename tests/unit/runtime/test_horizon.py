"""The state horizon (docs/semantics.md, "The state horizon"), stage by stage over dict-backed tables.

The event-time clock of a partition is the latest event day its stage handled; an item is closed
once the clock is more than the horizon past its day, and an event more than the horizon older
than the clock is dead-lettered as `too_late`.
"""

from __future__ import annotations

from incidentflow.domain import aggregate, events, incident, metrics
from incidentflow.domain import changes as chg
from incidentflow.domain import contributions as contrib
from incidentflow.domain import correlation as corr
from incidentflow.domain.series import CONTRIBUTION, Closed
from incidentflow.runtime.horizon import CLOCK, DUE
from incidentflow.runtime.packed import Record
from incidentflow.stream import changes, fold, scope, series, suspects
from tests.factories import DictTable, FakeContext, alert, change, record
from tests.unit.stream.test_stages import CORRELATING, NAMES, alerts, contribution, fold_incident, rows, run, tables

HORIZON = 90
DAY = 24 * 60  # minutes
API = {"service": "api", "env": "prod"}


def fold_stage(context: FakeContext, store: dict[str, DictTable]) -> fold.Fold:
    return fold.Fold(context, NAMES, store, aggregate.Limits(), CORRELATING, horizon_days=HORIZON)  # type: ignore[arg-type]


def items(table: DictTable) -> set[bytes]:
    """The keys of a table other than the horizon's own."""
    return {key for key in table if not key.startswith(b"\x00")}


def test_an_aggregate_past_its_horizon_is_closed_and_every_stage_that_keeps_it_told() -> None:
    context, store = FakeContext(), tables(fold.TABLES)
    stage = fold_stage(context, store)
    run(context, stage, alerts(alert("open", 0, labels=API), alert("resolve", 30, labels=API)))
    assert store["aggregates"][DUE + b"2026-11-01|acme:db-1"] == b""
    context.sent.clear()
    # The clock reaches the horizon's last day: the aggregate is kept ...
    run(context, stage, alerts(alert("open", HORIZON * DAY, key="db-2"), start=2))
    assert aggregate.AggregateState.model_validate_json(store["aggregates"][b"acme:db-1"]).incident is not None
    assert context.to(NAMES.suspects) == []
    # ... and the day after, closed.
    run(context, stage, alerts(alert("heartbeat", (HORIZON + 1) * DAY, key="db-2"), start=3))
    assert store["aggregates"][b"acme:db-1"] == b'{"closed":true}'
    assert store["aggregates"][CLOCK] == b"2027-01-31"
    assert not [key for key in store["aggregates"] if key.startswith(DUE)]
    closed = [CONTRIBUTION.validate_json(v) for _, v in context.to(NAMES.contributions)]
    assert {c.series for c in closed if isinstance(c, Closed)} >= {"mttr|api|prod|unknown", "mttr|api|prod|critical"}
    [(key, value)] = context.to(NAMES.suspects)
    side = corr.Side.model_validate_json(value)
    assert key == "acme:db-1" and side.closed and not side.member
    assert [key for key, _ in context.to(NAMES.scope)] == ["service=api"]


def test_an_event_beyond_the_horizon_is_dead_lettered_as_too_late_and_one_just_inside_it_is_folded() -> None:
    context, store = FakeContext(), tables(fold.TABLES)
    stage = fold_stage(context, store)
    run(context, stage, alerts(alert("open", 0), alert("resolve", 30)))
    run(context, stage, alerts(alert("open", (HORIZON + 1) * DAY, key="now"), start=2))  # closes db-1
    late = [alert("heartbeat", 60 * DAY, event_id="late"),  # inside the horizon, but its aggregate was closed
            alert("open", 60, key="old"),  # on a day more than the horizon before the clock's
            alert("open", 12 * 60 + 1, key="inside")]  # the next day, just inside it  # fmt: skip
    assert run(context, stage, alerts(*late, start=3)) == ["too_late", "too_late", "applied"]
    assert [reason for _, _, reason in context.dead] == ["too_late", "too_late"]
    assert [
        i.aggregate_id for i in map(incident.Incident.model_validate_json, (v for _, v in context.to(NAMES.incidents)))
    ][-1] == "acme:inside"


def test_an_event_more_than_the_horizon_after_its_aggregates_resolution_is_too_late_before_the_clock_gets_there() -> (
    None
):
    context, store = FakeContext(), tables(fold.TABLES)
    stage = fold_stage(context, store)
    run(context, stage, alerts(alert("open", 0), alert("resolve", 30)))
    # The same check fires again a day past the horizon: the aggregate's figures are final by then,
    # whether or not the partition's clock has closed it yet (here it has not: nothing else came).
    again = alert("open", 30 + (HORIZON + 1) * DAY)
    assert run(context, stage, alerts(again, start=2)) == ["too_late"]
    assert run(context, stage, alerts(alert("open", 30 + HORIZON * DAY, event_id="inside"), start=3)) == ["applied"]


def test_the_series_forget_a_closed_item_and_keep_its_days_figures() -> None:
    context = FakeContext()
    stage = series.Series(context, NAMES, tables(series.TABLES))  # type: ignore[arg-type]
    at = alert("resolve", 30).occurred_at
    member = metrics.Member(version=2, present=True, status="resolved", resolved_at=at, time_to_restore_seconds=1800.0)
    filed = contrib.IncidentContribution(
        service="api", env="prod", severity="high", aggregate_id="acme:db-1", member=member
    )
    run(context, stage, [contribution(filed, 0)])
    [before] = rows(context).values()
    context.sent.clear()
    closing = [Closed(of="mttr", service="api", env="prod", severity=s, item="acme:db-1") for s in ("high", "low")]
    batch = [record(NAMES.contributions, c.series, c.model_dump_json(), offset=n + 1) for n, c in enumerate(closing)]
    assert run(context, stage, batch) == ["closed", "duplicate"]
    assert items(stage.tables["series-members"]) == set()  # type: ignore[arg-type]
    assert [k for k in stage.tables["series-days"] if k.count(b"|") > 4] == []  # type: ignore[attr-defined]  # no entry
    assert context.to(NAMES.metrics) == []  # the day's row stands as it was
    figures = metrics.DayFigures.model_validate_json(
        stage.tables["series-days"][series.day_key(filed.series, at.date())]
    )  # type: ignore[index]
    assert (figures.count, figures.max_seconds) == (before.count, before.max_seconds) == (1, 1800.0)


def change_records(*events: events.ChangeEvent, start: int = 0) -> list[Record]:
    return [record(NAMES.changes, e.change_id, e.model_dump_json(), offset=start + n) for n, e in enumerate(events)]


def test_a_change_past_its_horizon_is_closed_and_a_change_event_beyond_it_is_too_late() -> None:
    context, store = FakeContext(), tables(changes.TABLES)
    stage = changes.Changes(context, NAMES, store, CORRELATING, horizon_days=HORIZON)  # type: ignore[arg-type]
    run(context, stage, change_records(change("done", 0, labels=API)))
    verdict = corr.Verdict(aggregate_id="acme:db-1", change_id="ship:deploy-1", flips=1)
    run(context, stage, [record(NAMES.verdicts, "ship:deploy-1", verdict.model_dump_json(), offset=1)])
    assert items(store["changes"]) == {b"ship:deploy-1"}
    assert not [key for key in store["changes"] if key.startswith(DUE)]  # failed, not recovered: may still change
    restored = verdict.model_copy(
        update={"restored": corr.Restored(version=2, resolved_at=change("done", 40).occurred_at)}
    )
    run(context, stage, [record(NAMES.verdicts, "ship:deploy-1", restored.model_dump_json(), offset=2)])
    context.sent.clear()
    later = change("done", (HORIZON + 1) * DAY, key="deploy-2", labels=API)
    assert run(context, stage, change_records(later, start=3)) == ["applied"]
    assert items(store["changes"]) == {b"ship:deploy-2"}
    closed = [CONTRIBUTION.validate_json(v) for _, v in context.to(NAMES.contributions)]
    assert sorted(c.series for c in closed if isinstance(c, Closed)) == ["changes|api|prod|-", "recovery|api|prod|-"]
    scope_sides = [corr.Side.model_validate_json(v) for _, v in context.to(NAMES.scope)]
    assert [(s.change.change_id, s.closed) for s in scope_sides if s.change] == [
        ("ship:deploy-2", False),
        ("ship:deploy-1", True),
    ]
    old = change("done", 60, key="deploy-3", labels=API)
    inside = change("done", 12 * 60 + 1, key="deploy-4", labels=API)
    assert run(context, stage, change_records(old, inside, start=4)) == ["too_late", "applied"]


def test_scope_and_suspects_forget_a_closed_item_and_tell_no_one() -> None:
    context = FakeContext()
    scope_stage = scope.Scope(context, NAMES, tables(scope.TABLES), CORRELATING)  # type: ignore[arg-type]
    incident = fold_incident(alert("open", 10, labels={"service": "api"}), alert("resolve", 20))
    side = corr.Side(incident=corr.incident_side(incident, 3600.0, 300.0))
    deployed = corr.Side(change=chg.change_of(change("done", 0, labels={"service": "api"})))
    run(
        context,
        scope_stage,
        [record(NAMES.scope, "service=api", s.model_dump_json(), offset=n) for n, s in enumerate([side, deployed])],
    )
    assert len(context.to(NAMES.suspects)) == 1
    context.sent.clear()
    closing = [s.model_copy(update={"member": False, "closed": True}) for s in (side, deployed)]
    run(
        context,
        scope_stage,
        [record(NAMES.scope, "service=api", s.model_dump_json(), offset=n + 2) for n, s in enumerate(closing)],
    )
    assert scope_stage.tables["correlation-scope"] == {}  # type: ignore[comparison-overlap]
    assert context.sent == []
    suspects_stage = suspects.Suspects(context, NAMES, tables(suspects.TABLES), CORRELATING)  # type: ignore[arg-type]
    run(context, suspects_stage, [record(NAMES.suspects, "acme:db-1", s.model_dump_json(), offset=n)
                                  for n, s in enumerate([side, corr.Side(change=deployed.change)])])  # fmt: skip
    assert suspects_stage.tables["correlation-suspects"]  # type: ignore[truthy-bool]
    context.sent.clear()
    assert run(
        context, suspects_stage, [record(NAMES.suspects, "acme:db-1", closing[0].model_dump_json(), offset=2)]
    ) == ["closed"]
    assert suspects_stage.tables["correlation-suspects"] == {}  # type: ignore[comparison-overlap]
    assert context.sent == []
