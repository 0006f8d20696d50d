"""Deployment history: rollbacks by kind and by version, the change each undoes, rework, against the
oracle's batch recomputation, and the history stage over shuffled, duplicated and moved inputs."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain import change_fold as cf
from incidentflow.domain import history as hist
from incidentflow.domain.incident import Episode
from incidentflow.runtime.cache import Recent
from incidentflow.stream.history import KEPT, DeploymentHistory
from incidentflow.topics import Topics
from tests.factories import T0, DictTable, FakeContext, record
from tests.oracle import recompute_history

NAMES = Topics("t")


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def deploy(cid: str, minute: float, version: str | None = None, kind: str = "deployment") -> hist.Deployment:
    return hist.Deployment(change_id=cid, changed_at=at(minute), version=version, kind=kind)  # type: ignore[arg-type]


def window(aid: str, *spans: tuple[float, float | None], version: int = 1) -> hist.Window:
    episodes = tuple(Episode(opened_at=at(o), resolved_at=None if r is None else at(r)) for o, r in spans)
    return hist.Window(aggregate_id=aid, version=version, episodes=episodes)


def verdicts(*deployments: hist.Deployment, incidents: tuple[hist.Window, ...] = ()) -> dict[str, tuple[Any, ...]]:
    derived = hist.derive(deployments, incidents)
    return {cid: (d.rollback, d.rework, d.rolled_back_by) for cid, d in derived.items()}


def test_a_version_deployed_again_after_another_is_a_rollback_of_the_one_before_it() -> None:
    got = verdicts(deploy("a", 0, "v1"), deploy("b", 10, "v2"), deploy("c", 20, "v1"))
    assert got == {"a": (False, False, None), "b": (False, False, "c"), "c": (True, True, None)}
    assert hist.derive([deploy("b", 10, "v2"), deploy("c", 20, "v1"), deploy("a", 0, "v1")], [])[
        "b"
    ].rolled_back_at == at(20)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # the same version again is a redeploy, not a rollback
        ([("a", 0, "v1", "deployment"), ("b", 10, "v1", "deployment")], {"a": (False, False, None), "b": (False, False, None)}),
        # deployments without a version do not interrupt the versions; the rollback undoes the one just before it
        ([("a", 0, "v1", "deployment"), ("b", 10, "v2", "deployment"), ("c", 15, None, "deployment"),
          ("d", 20, "v1", "deployment")],
         {"a": (False, False, None), "b": (False, False, None), "c": (False, False, "d"), "d": (True, True, None)}),
        # a rollback by kind with nothing before it undoes nothing
        ([("a", 0, None, "rollback")], {"a": (True, True, None)}),
        # hotfixes and reverts are rework, not rollbacks
        ([("a", 0, "v1", "deployment"), ("b", 5, "v2", "hotfix"), ("c", 9, "v3", "revert")],
         {"a": (False, False, None), "b": (False, True, None), "c": (False, True, None)}),
        # a rollback of a rollback: each undoes the one before it
        ([("a", 0, "v1", "deployment"), ("b", 10, "v2", "deployment"), ("c", 20, "v1", "deployment"),
          ("d", 30, "v2", "deployment")],
         {"a": (False, False, None), "b": (False, False, "c"), "c": (True, True, "d"), "d": (True, True, None)}),
    ],
)  # fmt: skip
def test_rollbacks_and_rework_by_kind_and_version(
    history: list[tuple[str, float, str | None, str]], expected: dict[str, tuple[Any, ...]]
) -> None:
    assert verdicts(*(deploy(*item) for item in history)) == expected


@pytest.mark.parametrize(
    ("minute", "rework"),
    [(9, False), (10, False), (10.5, True), (20, True), (20.5, False), (40, True)],
)
def test_a_deployment_while_an_incident_of_its_service_and_env_was_open_is_rework(minute: float, rework: bool) -> None:
    incidents = (window("i1", (10, 20)), window("i2", (35, None)))
    assert verdicts(deploy("x", minute), incidents=incidents)["x"][1] is rework


# -- against the oracle ----------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[hist.Deployment], list[hist.Window]]:
    n = draw(st.integers(0, 12))
    deployments = [
        deploy(f"c{i}", draw(st.integers(0, 200)), draw(st.sampled_from([None, "v1", "v2", "v3", f"own{i}"])),
               draw(st.sampled_from(["deployment"] * 6 + ["rollback", "hotfix", "revert"])))
        for i in range(n)
    ]  # fmt: skip
    incidents = []
    for i in range(draw(st.integers(0, 3))):
        opened = draw(st.integers(0, 200))
        length = draw(st.one_of(st.none(), st.integers(0, 60)))
        incidents.append(window(f"i{i}", (opened, None if length is None else opened + length)))
    return deployments, incidents


def oracle(deployments: list[hist.Deployment], incidents: list[hist.Window]) -> dict[str, tuple[Any, ...]]:
    changes = [{"change_id": d.change_id, "labels": {"service": "s", "env": "prod"}, "changed_at": d.changed_at,
                "counted": True, "kind": d.kind, "version": d.version} for d in deployments]  # fmt: skip
    incident_dicts = [{"labels": {"service": "s", "env": "prod"},
                       "episodes": [{"opened_at": e.opened_at, "resolved_at": e.resolved_at} for e in w.episodes]}
                      for w in incidents]  # fmt: skip
    found = recompute_history(changes, incident_dicts)
    return {cid: (h["rollback"], h["rework"], h["rolled_back_at"], h["previous"]) for cid, h in found.items()}


@settings(max_examples=300, deadline=None)
@given(case=histories())
def test_derive_equals_the_batch_recomputation(case: tuple[list[hist.Deployment], list[hist.Window]]) -> None:
    deployments, incidents = case
    derived = hist.derive(deployments, incidents)
    assert {cid: (d.rollback, d.rework, d.rolled_back_at, d.previous) for cid, d in derived.items()} == oracle(*case)


# -- the stage -------------------------------------------------------------------------------------


def run_stage(
    inputs: list[tuple[str, hist.HistoryInput]], kept: int = KEPT
) -> tuple[DictTable, dict[tuple[str, str], Any]]:
    """Every input through the history stage, one batch each (`kept` histories in memory); the newest
    verdict per (change, series)."""
    context, table = FakeContext(), DictTable()
    stage = DeploymentHistory(context, NAMES, {"deployment-history": table}, ledgers=Recent(kept))  # type: ignore[arg-type]
    for offset, (series, item) in enumerate(inputs):
        asyncio.run(context.run(stage, [record(NAMES.history, series, item.model_dump_json(), offset=offset)]))
    newest: dict[tuple[str, str], hist.HistoryVerdict] = {}
    for _, value in context.to(NAMES.history_verdicts):
        verdict = hist.HistoryVerdict.model_validate_json(value)
        known = newest.get((verdict.change_id, verdict.series))
        if known is None or verdict.seq > known.seq:
            newest[(verdict.change_id, verdict.series)] = verdict
    return table, {k: v.derived for k, v in newest.items()}


@settings(max_examples=100, deadline=None)
@given(case=histories(), seed=st.integers(0, 1000))
def test_the_stage_tells_every_change_its_final_verdict_in_any_order_and_with_duplicates(
    case: tuple[list[hist.Deployment], list[hist.Window]], seed: int
) -> None:
    deployments, incidents = case
    rnd = random.Random(seed)
    inputs = [("s|prod", hist.HistoryInput(deployment=d)) for d in deployments]
    # an incident seen first while open, later resolved (a newer version); a deployment first filed
    # under another service, then moved here
    for w in incidents:
        inputs.append(("s|prod", hist.HistoryInput(incidents=(w.model_copy(update={"version": 2}),))))
        first = w.model_copy(update={"episodes": (w.episodes[0].model_copy(update={"resolved_at": None}),)})
        inputs.append(("s|prod", hist.HistoryInput(incidents=(first,))))
    moved = deployments[: len(deployments) // 3]
    for d in moved:
        inputs.append(("other|prod", hist.HistoryInput(deployment=d)))
    inputs += [inputs[rnd.randrange(len(inputs))] for _ in range(len(inputs) // 4)] if inputs else []
    rnd.shuffle(inputs)
    inputs = together(inputs, rnd)
    inputs += [("other|prod", hist.HistoryInput(change_id=d.change_id, member=False)) for d in moved]
    final = hist.derive(deployments, [w.model_copy(update={"version": 2}) for w in incidents])
    # with every history kept in memory, and with one only: each input of the other series reads its history again
    for kept in (KEPT, 1):
        _, told = run_stage(inputs, kept)
        assert {cid: d for (cid, series), d in told.items() if series == "s|prod"} == final
        assert all(d is None for (_, series), d in told.items() if series == "other|prod")


def together(inputs: list[tuple[str, hist.HistoryInput]], rnd: random.Random) -> list[tuple[str, hist.HistoryInput]]:
    """The inputs with some runs of incidents of one history sent as one input, as the incident fold
    sends a batch's incidents (each incident once)."""
    out: list[tuple[str, hist.HistoryInput]] = []
    for series, item in inputs:
        if out and item.incidents and rnd.random() < 0.5:
            last_series, last = out[-1]
            ids = {w.aggregate_id for w in last.incidents}
            if last_series == series and last.incidents and last.member and item.incidents[0].aggregate_id not in ids:
                out[-1] = (series, hist.HistoryInput(incidents=(*last.incidents, *item.incidents)))
                continue
        out.append((series, item))
    return out


def test_a_replayed_input_sends_every_verdict_again_and_a_redelivered_one_nothing() -> None:
    context, table = FakeContext(), DictTable()
    stage = DeploymentHistory(context, NAMES, {"deployment-history": table})  # type: ignore[arg-type]
    first = record(NAMES.history, "s|prod", hist.HistoryInput(deployment=deploy("a", 0, "v1")).model_dump_json(), 5)
    second = record(NAMES.history, "s|prod", hist.HistoryInput(deployment=deploy("b", 9, "v2")).model_dump_json(), 6)
    assert asyncio.run(context.run(stage, [first, second])) == ["applied", "applied"]
    sent = len(context.sent)
    assert asyncio.run(context.run(stage, [second])) == ["replayed"]  # a crash after the state was saved
    assert len(context.sent) == sent + 2
    later = record(NAMES.history, "s|prod", second.value or b"", 40)
    assert asyncio.run(context.run(stage, [later])) == ["duplicate"]
    assert len(context.sent) == sent + 2


def test_history_past_the_horizon_is_forgotten_without_moving_any_verdict() -> None:
    ledger = hist.Ledger()
    for item in (deploy("old", 0, "v1"), deploy("mid", 10, "v2"), deploy("new", 100 * 24 * 60, "v1")):
        ledger.put(item.change_id, item)
    ledger.put_incident(window("i-old", (1, 2)), member=True)
    assert ledger.told["new"].rollback and ledger.told["mid"].rolled_back_by == "new"
    told = ledger.told["new"]
    assert ledger.prune(at(24 * 60)) == (["old", "mid"], ["i-old"])
    assert set(ledger.items) == {"new"} and ledger.told == {"new": told} and not ledger.incidents


def test_a_history_of_incidents_alone_forgets_the_resolved_ones_past_the_horizon() -> None:
    """A service whose incidents come without deployments: its history's clock is the incidents' times."""
    context, table = FakeContext(), DictTable()
    stage = DeploymentHistory(context, NAMES, {"deployment-history": table}, horizon_days=90)  # type: ignore[arg-type]
    day = 24 * 60
    inputs = [hist.HistoryInput(incidents=(window("old", (0, 60)),)), hist.HistoryInput(incidents=(window("open", (10, None)),)),
              hist.HistoryInput(incidents=(window("recent", (80 * day, 80 * day + 5)),)),
              hist.HistoryInput(incidents=(window("new", (91 * day, 91 * day + 30)),))]  # fmt: skip
    messages = [record(NAMES.history, "s|prod", item.model_dump_json(), i) for i, item in enumerate(inputs)]
    assert asyncio.run(context.run(stage, messages)) == ["applied"] * 4
    assert set(stage.ledger("s|prod").incidents) == {"open", "recent", "new"}
    assert not any(b"|i|old" in key for key in table.data)
    stage.ledgers.clear()  # read again from the table: the same
    assert set(stage.ledger("s|prod").incidents) == {"open", "recent", "new"}


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Deployments put, moved, changed and removed, and incidents opened, resolved, reopened and moved away."""
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 30))):
        if draw(st.booleans()):
            cid = f"c{draw(st.integers(0, 9))}"
            if draw(st.integers(0, 5)) == 0:
                ops.append(("leave", cid))
            else:
                ops.append(("put", deploy(cid, draw(st.integers(0, 100)), draw(st.sampled_from([None, "v1", "v2", "v3"])),
                                          draw(st.sampled_from(["deployment"] * 5 + ["rollback", "hotfix"])))))  # fmt: skip
        else:
            aid, opened = f"i{draw(st.integers(0, 3))}", draw(st.integers(0, 100))
            spans = [(opened, draw(st.one_of(st.none(), st.integers(opened, 120))))]
            if spans[0][1] is not None and draw(st.booleans()):
                spans.append((spans[0][1] + 1, draw(st.one_of(st.none(), st.integers(spans[0][1] + 1, 130)))))
            ops.append(
                ("incident", (window(aid, *spans, version=draw(st.integers(1, 4))), draw(st.integers(0, 6)) > 0))
            )
    return ops


@settings(max_examples=400, deadline=None)
@given(ops=operations())
def test_the_ledger_judges_again_exactly_what_derive_says_after_every_change(ops: list[tuple[str, Any]]) -> None:
    ledger = hist.Ledger()
    told: dict[str, hist.Derived] = {}
    for op, arg in ops:
        if op == "put":
            moved = ledger.put(arg.change_id, arg)
        elif op == "leave":
            moved = ledger.put(arg, None)
        else:
            moved = ledger.put_incident(*arg)
        for cid, derived in moved.items():
            if derived is None:
                told.pop(cid, None)
            else:
                told[cid] = derived
        assert told == hist.derive(ledger.items.values(), ledger.incidents.values())
        # a ledger read back from what a history stores judges the same
        again = hist.Ledger.of([hist.Filed(deployment=d, told=told.get(c)) for c, d in ledger.items.items()],
                               ledger.incidents.values(), ledger.meta)  # fmt: skip
        assert again.cover == ledger.cover and again.order == ledger.order


def test_the_change_fold_counts_a_rolled_back_change_as_failed_until_its_rollback_moves_away() -> None:
    from tests.factories import change

    record_ = cf.with_change_event(cf.ChangeRecord(), change("done", 0, labels={"service": "s", "env": "prod"}))
    rolled = hist.Derived(rolled_back_at=at(30), rolled_back_by="ship:r")
    told = cf.with_history_verdict(record_, hist.HistoryVerdict(change_id="ship:deploy-1", series="s|prod", seq=3,
                                                                  derived=rolled))  # fmt: skip
    assert told.facts is not None and told.facts.failed and told.facts.recovered_at == at(30)
    assert told.facts.recovery_seconds == 30 * 60
    stale = cf.with_history_verdict(told, hist.HistoryVerdict(change_id="ship:deploy-1", series="s|prod", seq=2))
    assert stale == told  # an older verdict changes nothing
    retracted = cf.with_history_verdict(told, hist.HistoryVerdict(change_id="ship:deploy-1", series="s|prod", seq=4,
                                                                     derived=hist.Derived()))  # fmt: skip
    assert retracted.facts is not None and not retracted.facts.failed and retracted.facts.ever_rolled_back
    # a verdict before any event waits for it
    waiting = cf.with_history_verdict(cf.ChangeRecord(), hist.HistoryVerdict(change_id="ship:deploy-1",
                                                                                  series="s|prod", seq=1, derived=rolled))  # fmt: skip
    joined = cf.with_change_event(waiting, change("done", 0, labels={"service": "s", "env": "prod"}))
    assert joined.facts is not None and joined.facts.failed
    assert json.loads(joined.model_dump_json())["facts"]["ever_rolled_back"] is True
