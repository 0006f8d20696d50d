"""Each stage of the worker over dict-backed tables and a context that collects what it sends.

The stages are run as the runtime runs them (`FakeContext.run`: begin, each record in its
partition, finish); what they send and what they keep is checked, not how.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from incidentflow.config import Integrations, Settings
from incidentflow.domain import aggregate, metrics
from incidentflow.domain import change_fold as cf
from incidentflow.domain import changes as chg
from incidentflow.domain import contributions as contrib
from incidentflow.domain import correlation as corr
from incidentflow.domain import history as hist
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import AlertEvent, ChangeEvent
from incidentflow.domain.incident import Incident
from incidentflow.domain.records import Correlation, MetricRow
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import Stage
from incidentflow.stream import changes, fold, scope, series, suspects
from incidentflow.stream.normalize import Normalize
from incidentflow.stream.sides import Correlating
from incidentflow.topics import Topics
from tests.factories import At, DictTable, FakeContext, alert, change, record

NAMES = Topics("t")
CORRELATING = Correlating.of(Settings(), Integrations(by_name={}))


def tables(of: dict[str, str]) -> dict[str, DictTable]:
    return {name: DictTable() for name in of}


def run(context: FakeContext, stage: Stage, *batches: list[Record]) -> list[str]:
    outcomes = []
    for batch in batches:
        outcomes += asyncio.run(context.run(stage, batch))
    return outcomes


def alerts(*events: AlertEvent, start: int = 0) -> list[Record]:
    return [record(NAMES.alerts, e.aggregate_id, e.model_dump_json(), offset=start + n) for n, e in enumerate(events)]


# -- normalize ---------------------------------------------------------------------------------


def envelope(body: dict[str, object], source: str = "native") -> str:
    return RawEnvelope(request_id="r-1", source=source, integration="acme", received_at=datetime(2026, 11, 1, tzinfo=UTC),
                       labels={"service": "api"}, body=json.dumps(body)).model_dump_json()  # fmt: skip


def test_normalize_sends_each_canonical_event_keyed_by_its_aggregate_and_dead_letters_the_rest() -> None:
    context = FakeContext()
    opened = {"external_aggregate_key": "db-1", "action": "open",
              "occurred_at": "2026-11-01T12:00:00Z", "title": "db down"}  # fmt: skip
    deployed = {"change_key": "d-1", "status": "done", "occurred_at": "2026-11-01T11:50:00Z"}
    batch = [record(NAMES.raw, "r", envelope(opened)), record(NAMES.raw, "r", envelope(deployed), offset=1),
             record(NAMES.raw, "r", "not json", offset=2), record(NAMES.raw, "r", envelope({"neither": "action nor status"}), offset=3)]  # fmt: skip
    assert run(context, normalize(context), batch) == [
        "normalized",
        "normalized",
        "deadlettered",
        "deadlettered",
    ]
    [(key, value)] = context.to(NAMES.alerts)
    event = AlertEvent.model_validate_json(value)
    assert (key, event.aggregate_id, event.labels) == ("acme:db-1", "acme:db-1", {"service": "api"})
    [(key, value)] = context.to(NAMES.changes)
    assert key == ChangeEvent.model_validate_json(value).change_id == "acme:d-1"
    assert [reason.split(":")[0] for _, _, reason in context.dead] == ["not a raw envelope", "native payload rejected"]


def normalize(context: FakeContext) -> Normalize:
    return Normalize(context, NAMES, "pipeline", 50)


def test_normalize_reads_cdevents_from_kafka_in_both_modes_named_by_source_and_id() -> None:
    from cloudevents.core.bindings import kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    context = FakeContext()
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "cloudevents" / "incident-detected-binary.json"
    data = json.loads(fixture.read_text())
    c = data["context"]
    event = CloudEvent({"specversion": "1.0", "id": c["id"], "source": c["source"], "type": c["type"],
                        "datacontenttype": "application/json"}, data)  # fmt: skip
    binary, structured = kafka.to_binary(event, JSONFormat()), kafka.to_structured(event, JSONFormat())
    bad = kafka.to_binary(
        CloudEvent({**event.get_attributes(), "type": "dev.cdevents.unknown.0.1.0"}, data), JSONFormat()
    )
    batch = [Record(NAMES.cdevents, 0, n, None, m.value, 1_700_000_000.0, headers=list(m.headers.items()))
             for n, m in enumerate((binary, structured, bad))]  # fmt: skip
    assert run(context, normalize(context), batch) == ["normalized", "normalized", "deadlettered"]
    [(key, first), (_, second)] = context.to(NAMES.alerts)
    one, two = AlertEvent.model_validate_json(first), AlertEvent.model_validate_json(second)
    assert key == one.aggregate_id == "pipeline:incident/4711"
    assert one.event_id == two.event_id and one.labels == {"env": "prod", "service": "service/checkout",
                                                             "artifact": "pkg:oci/checkout@sha256%3A0b31b1c0"}  # fmt: skip
    assert one.received_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert "unsupported type" in context.dead[0][2]


# -- fold --------------------------------------------------------------------------------------


def fold_stage(context: FakeContext, store: dict[str, DictTable] | None = None) -> fold.Fold:
    return fold.Fold(context, NAMES, store or tables(fold.TABLES), aggregate.Limits(), CORRELATING)  # type: ignore[arg-type]


def incidents(context: FakeContext) -> list[Incident]:
    return [Incident.model_validate_json(value) for _, value in context.to(NAMES.incidents)]


def test_the_fold_saves_and_publishes_each_aggregate_once_per_batch() -> None:
    context = FakeContext()
    stage = fold_stage(context)
    labels = {"service": "api"}
    batch = alerts(alert("open", 0, labels=labels), alert("resolve", 10, labels=labels), alert("open", 0, key="db-2"))
    assert run(context, stage, batch) == ["applied", "applied", "applied"]
    published = {i.aggregate_id: i for i in incidents(context)}
    assert len(incidents(context)) == 2
    assert published["acme:db-1"].status == "resolved"
    assert published["acme:db-1"].time_to_restore_seconds == 600.0
    assert {k for k in stage.states if not k.startswith(b"\x00")} == {b"acme:db-1", b"acme:db-2"}  # type: ignore[attr-defined]  # a DictTable
    contributions = [contrib.IncidentContribution.model_validate_json(v) for _, v in context.to(NAMES.contributions)]
    assert {(c.series, c.member.status) for c in contributions} == {("mttr|api|unknown|unknown", "resolved"),
                                                             ("mttr|unknown|unknown|unknown", "open")}  # fmt: skip
    # Only the incident with a scope label goes toward correlation.
    assert [key for key, _ in context.to(NAMES.suspects)] == ["acme:db-1"]
    assert [key for key, _ in context.to(NAMES.scope)] == ["service=api"]


def test_the_fold_sends_a_batchs_incidents_to_each_history_in_one_record_split_while_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = FakeContext()
    stage = fold_stage(context)
    api = [alert("open", n, key=f"api-{n}", labels={"service": "api", "env": "prod"}) for n in range(6)]
    run(context, stage, alerts(*api, alert("open", 0, key="db", labels={"service": "db", "env": "prod"})))
    sent = [(key, hist.HistoryInput.model_validate_json(value)) for key, value in context.to(NAMES.history)]
    assert [(key, len(item.incidents)) for key, item in sent] == [("api|prod", 6), ("db|prod", 1)]
    # A history record larger than the limit is split in halves, the batch's incidents each sent once, in order.
    context.sent.clear()
    one = len(sent[1][1].model_dump_json())
    monkeypatch.setattr(fold, "HISTORY_INPUT_BYTES", 2 * one)
    moved = [alert("resolve", 30, key=f"api-{n}", labels={"service": "api", "env": "prod"}) for n in range(6)]
    run(context, stage, alerts(*moved, start=10))
    parts = [hist.HistoryInput.model_validate_json(value) for _, value in context.to(NAMES.history)]
    assert len(parts) > 1 and all(len(p.model_dump_json()) <= 2 * one for p in parts)
    ids = [w.aggregate_id for p in parts for w in p.incidents]
    assert ids == [f"acme:api-{n}" for n in range(6)]
    assert all(e.resolved_at is not None for p in parts for w in p.incidents for e in w.episodes)


def test_a_redelivered_alert_republishes_the_incident_and_an_older_than_history_one_is_dead_lettered() -> None:
    context = FakeContext()
    store = tables(fold.TABLES)
    opened = alert("open", 0, labels={"service": "api"})
    run(context, fold_stage(context, store), alerts(opened))
    context.sent.clear()
    assert run(context, fold_stage(context, store), alerts(opened, start=1)) == ["duplicate"]
    assert [i.status for i in incidents(context)] == ["open"]
    assert context.to(NAMES.contributions)  # republished whole, in case a crash lost it
    context = FakeContext()
    limited = fold.Fold(context, NAMES, store, aggregate.Limits(max_events=2), CORRELATING)  # type: ignore[arg-type]
    run(context, limited, alerts(*(alert("heartbeat", 10 + n, event_id=f"h{n}") for n in range(4)), start=2))
    assert run(context, limited, alerts(alert("resolve", -5, event_id="late"), start=9)) == ["too_late"]
    assert context.dead[0][2] == "too_late"


def test_the_fold_keeps_the_states_it_saved_parsed_for_the_next_batches_of_the_same_generation() -> None:
    context = FakeContext()
    store = tables(fold.TABLES)
    stage = fold_stage(context, store)
    run(context, stage, alerts(alert("open", 0)))
    saved = store["aggregates"][b"acme:db-1"]
    store["aggregates"][b"acme:db-1"] = b"not read"  # what the table holds is not read again ...
    assert run(context, stage, alerts(alert("resolve", 10), start=1)) == ["applied"]
    assert incidents(context)[-1].status == "resolved"
    assert store["aggregates"][b"acme:db-1"] != saved  # ... and the new state is saved
    store["aggregates"][b"acme:db-1"] = saved  # another owner's state: read once the generation changes
    context.generation += 1
    context.sent.clear()
    assert run(context, stage, alerts(alert("heartbeat", 20), start=2)) == ["applied"]
    assert incidents(context)[-1].status == "open" and incidents(context)[-1].event_count == 2


def test_the_fold_rekeys_a_record_keyed_otherwise_and_dead_letters_what_is_not_an_alert() -> None:
    context = FakeContext()
    opened = alert("open", 0)
    batch = [record(NAMES.alerts, "wrong", opened.model_dump_json()), record(NAMES.alerts, "k", b"{}", offset=1)]
    assert run(context, fold_stage(context), batch) == ["rekeyed", "deadlettered"]
    assert context.to(NAMES.alerts) == [("acme:db-1", opened.model_dump_json().encode())]
    assert incidents(context) == []


def test_a_failed_save_dead_letters_every_record_of_the_aggregate() -> None:
    class Broken(DictTable):
        def set(self, key: bytes, value: bytes) -> None:
            raise OSError("disk full")

    context = FakeContext()
    stage = fold_stage(context, {"aggregates": Broken()})
    run(context, stage, alerts(alert("open", 0), alert("resolve", 5)))
    assert [(r.offset, kind) for r, kind, _ in context.dead] == [(0, "error"), (1, "error")]
    assert incidents(context) == []


# -- series ------------------------------------------------------------------------------------


def contribution(c: contrib.IncidentContribution | contrib.ChangeContribution, offset: int) -> Record:
    return record(NAMES.contributions, c.series, c.model_dump_json(), offset=offset)


def incident(aggregate_id: str, member: metrics.Member) -> contrib.IncidentContribution:
    return contrib.IncidentContribution(
        service="api", env="unknown", severity="high", aggregate_id=aggregate_id, member=member
    )


def rows(context: FakeContext) -> dict[str, MetricRow]:
    return {key: MetricRow.model_validate_json(value) for key, value in context.to(NAMES.metrics)}


def test_the_series_stage_files_incidents_and_changes_and_publishes_each_changed_day_once() -> None:
    context = FakeContext()
    store = tables(series.TABLES)
    stage = series.Series(context, NAMES, store)  # type: ignore[arg-type]
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    opened = incident("a:1", metrics.Member(version=1, present=True, status="open"))
    resolved = incident("a:1", metrics.Member(version=2, present=True, status="resolved", resolved_at=at,
                                              time_to_restore_seconds=600.0))  # fmt: skip
    other = incident("a:2", resolved.member.model_copy(update={"time_to_restore_seconds": 60.0}))
    done = chg.change_of(change("done", 0, labels={"service": "api"}, committed_minute=-90))
    deployed = contrib.ChangeContribution(service="api", env="unknown", facts=cf.ChangeFacts(change=done))
    plain = chg.change_of(change("done", 1, key="deploy-2", labels={"service": "api"}))
    no_commit = contrib.ChangeContribution(service="api", env="unknown", facts=cf.ChangeFacts(change=plain))
    batch = [contribution(c, n) for n, c in enumerate([opened, resolved, other, resolved, deployed, no_commit])]
    assert run(context, stage, batch) == ["applied", "applied", "applied", "duplicate", "applied", "applied"]
    found = rows(context)
    assert len(context.to(NAMES.metrics)) == len(found) == 2  # one row per changed day, once per batch
    day = found["mttr|api|unknown|high|2026-11-01"]
    assert (day.count, day.sum_seconds, day.max_seconds) == (2, 660.0, 600.0)
    assert (
        found["changes|api|unknown|-|2026-11-01"].changes,
        found["changes|api|unknown|-|2026-11-01"].failed_changes,
    ) == (2, 0)
    changed = found["changes|api|unknown|-|2026-11-01"]
    assert (changed.lead_times, changed.sum_seconds, changed.max_seconds) == (1, 5400.0, 5400.0)  # one without a commit
    assert sum(changed.sketch.values()) == 1
    index = metrics.SeriesIndex.model_validate_json(store["series-index"][b"mttr|api|unknown|high"])
    assert (index.open, index.days) == (0, (at.date(),))

    # The change turns out failed (a live correlation): its day is published again.
    verdicts = deployed.facts.model_copy(update={"verdicts": {"a:1": 1}})
    context.sent.clear()
    assert run(context, stage, [contribution(deployed.model_copy(update={"facts": verdicts}), 6)]) == ["applied"]
    assert rows(context)["changes|api|unknown|-|2026-11-01"].failed_changes == 1
    # The incident is withdrawn from its series (it moved to another): its entry leaves the day.
    context.sent.clear()
    gone = incident("a:1", metrics.Member(version=3, present=False))
    assert run(context, stage, [contribution(gone, 7)]) == ["applied"]
    day = rows(context)["mttr|api|unknown|high|2026-11-01"]
    assert (day.count, day.sum_seconds, day.max_seconds) == (1, 60.0, 60.0)


def test_the_series_stage_dead_letters_what_is_not_a_contribution() -> None:
    context = FakeContext()
    stage = series.Series(context, NAMES, tables(series.TABLES))  # type: ignore[arg-type]
    batch = [record(NAMES.contributions, "s", b'{"metric": "nope"}'), record(NAMES.contributions, "s", b"[]", offset=1)]
    assert run(context, stage, batch) == ["deadlettered", "deadlettered"]
    assert context.to(NAMES.metrics) == []


def test_a_batch_cut_short_leaves_nothing_for_the_next() -> None:
    context = FakeContext()
    store = tables(series.TABLES)
    stage = series.Series(context, NAMES, store)  # type: ignore[arg-type]
    opened = incident("a:1", metrics.Member(version=1, present=True, status="open"))
    stage.begin()
    with context.acting_for(At(0)):
        asyncio.run(stage.handle(contribution(opened, 0)))  # then a rebalance: no finish
    run(context, stage, [])
    assert store["series-index"] == {} and store["series-members"] == {}
    assert context.to(NAMES.metrics) == []


# -- change fold, scope and suspects -------------------------------------------------------------


def test_a_change_is_folded_filed_under_its_scope_and_contributed_to_its_service() -> None:
    context = FakeContext()
    stage = changes.Changes(context, NAMES, tables(changes.TABLES), CORRELATING)  # type: ignore[arg-type]
    done = change("done", 0, labels={"service": "api", "env": "prod"})
    batch = [record(NAMES.changes, done.change_id, done.model_dump_json()),
             record(NAMES.changes, done.change_id, done.model_dump_json(), offset=1)]  # fmt: skip
    assert run(context, stage, batch) == ["applied", "duplicate"]
    assert [key for key, _ in context.to(NAMES.scope)] == ["service=api", "service=api"]
    [contributed, again] = [
        contrib.ChangeContribution.model_validate_json(v) for _, v in context.to(NAMES.contributions)
    ]
    assert contributed == again and contributed.series == "changes|api|prod|-"
    # A verdict makes the change failed: its series hears of it.
    verdict = corr.Verdict(aggregate_id="acme:db-1", change_id=done.change_id, flips=1)
    context.sent.clear()
    assert run(context, stage, [record(NAMES.verdicts, done.change_id, verdict.model_dump_json(), offset=2)]) == [
        "applied"
    ]
    failed = [contrib.ChangeContribution.model_validate_json(v) for _, v in context.to(NAMES.contributions)]
    assert [(c.series, c.facts.failed) for c in failed] == [("changes|api|prod|-", True), ("recovery|api|prod|-", True)]
    assert failed[1].facts.recovered_at is None  # its incident is not known to be resolved yet
    # The incident resolves: the change has recovered, on that day.
    resolved_at = done.occurred_at + timedelta(minutes=42)
    resolved = verdict.model_copy(update={"restored": corr.Restored(version=3, resolved_at=resolved_at)})
    context.sent.clear()
    assert run(context, stage, [record(NAMES.verdicts, done.change_id, resolved.model_dump_json(), offset=3)]) == [
        "applied"
    ]
    recovery = [contrib.ChangeContribution.model_validate_json(v) for _, v in context.to(NAMES.contributions)][1]
    member = recovery.facts.recovery("api", "prod")
    assert member.present and member.recovered_at == resolved_at and member.seconds == 42 * 60.0


def side_record(key: str, side: corr.Side, offset: int, topic: str) -> Record:
    return record(topic, key, side.model_dump_json(), offset=offset)


@pytest.mark.parametrize("change_first", [True, False])
def test_scope_forwards_a_change_to_the_incident_it_matches_whichever_arrives_second(change_first: bool) -> None:
    context = FakeContext()
    stage = scope.Scope(context, NAMES, tables(scope.TABLES), CORRELATING)  # type: ignore[arg-type]
    incident = fold_incident(alert("open", 10, labels={"service": "api"}))
    incident_side = corr.Side(incident=corr.incident_side(incident, 3600.0, 300.0))
    change_side = corr.Side(change=chg.change_of(change("done", 0, labels={"service": "api"})))
    far = corr.Side(change=chg.change_of(change("done", -120, key="old", labels={"service": "api"})))
    sides = [change_side, far, incident_side] if change_first else [incident_side, change_side, far]
    batch = [side_record("service=api", side, n, NAMES.scope) for n, side in enumerate(sides)]
    assert run(context, stage, batch) == ["applied"] * 3
    forwarded = [(key, corr.Side.model_validate_json(v).change) for key, v in context.to(NAMES.suspects)]
    assert [(key, c.change_id if c else None) for key, c in forwarded] == [("acme:db-1", "ship:deploy-1")]


def fold_incident(*events: AlertEvent) -> Incident:
    state = aggregate.AggregateState()
    for event in events:
        state = aggregate.apply(state, event).state
    assert state.incident is not None
    return state.incident


def test_suspects_publish_a_ranked_correlation_and_its_retraction_with_verdicts() -> None:
    context = FakeContext()
    stage = suspects.Suspects(context, NAMES, tables(suspects.TABLES), CORRELATING)  # type: ignore[arg-type]
    incident = fold_incident(alert("open", 10, labels={"service": "api"}))
    incident_side = corr.Side(incident=corr.incident_side(incident, 3600.0, 300.0))
    deployed = chg.change_of(change("done", 0, labels={"service": "api"}))
    batch = [side_record("acme:db-1", incident_side, 0, NAMES.suspects),
             side_record("acme:db-1", corr.Side(change=deployed), 1, NAMES.suspects)]  # fmt: skip
    assert run(context, stage, batch) == ["applied", "applied"]
    [(_, value)] = context.to(NAMES.correlations)
    published = Correlation.model_validate_json(value)
    assert (published.change_id, published.rank, published.retracted) == ("ship:deploy-1", 1, False)
    assert [corr.Verdict.model_validate_json(v).live for _, v in context.to(NAMES.verdicts)] == [True]
    # The change moves two hours earlier: out of the window, the pair is retracted.
    moved = chg.change_of(change("done", -120, labels={"service": "api"}, event_id="moved"))
    context.sent.clear()
    run(context, stage, [side_record("acme:db-1", corr.Side(change=chg.join(deployed, moved)), 2, NAMES.suspects)])
    retracted = [Correlation.model_validate_json(v) for _, v in context.to(NAMES.correlations)]
    assert [(c.change_id, c.retracted) for c in retracted] == [("ship:deploy-1", True)]
    assert [corr.Verdict.model_validate_json(v).live for _, v in context.to(NAMES.verdicts)] == [False]
