"""Lead time from pushes: the chain walk against the oracle's batch recomputation, the incremental join
(`Chains`) against the one-pass rule after every input, and the stage over shuffled, duplicated and
late pushes and requests."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from incidentflow.domain import lead as lt
from incidentflow.runtime.cache import Recent
from incidentflow.stream.lead import KEPT, LeadTime
from incidentflow.topics import Topics
from tests.factories import T0, DictTable, FakeContext, record
from tests.oracle import recompute_leads

NAMES = Topics("t")


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def push(before: str | None, after: str, *minutes: float) -> lt.Link:
    times = [at(m) for m in minutes]
    return lt.Link(push_id=f"{before}>{after}", before=before, after=after, earliest=min(times, default=None),
                   at=max(times, default=T0))  # fmt: skip


def ask(cid: str, sha: str, until: str | None, ships: bool = True, minute: float = 500) -> lt.LeadRequest:
    return lt.LeadRequest(change_id=cid, sha=sha, until=until, ships=ships, changed_at=at(minute))


def test_a_deployment_ships_the_pushes_back_to_the_previous_deployment() -> None:
    links = [push("a", "b", 10, 12), push("b", "c", 20), push("c", "d", 30, 31), push(None, "a", 1)]
    assert lt.lead_of(links, ask("x", "d", "b")) == lt.Lead(committed_at=at(20), complete=True)
    assert lt.lead_of(links, ask("x", "d", "d")) == lt.Lead(committed_at=None, complete=True)  # the same sha again
    # the first deployment: as far back as the pushes go, here to the ref's creation
    assert lt.lead_of(links, ask("x", "d", None)) == lt.Lead(committed_at=at(1), complete=True)


def test_a_chain_with_a_missing_push_has_no_commit_time_until_it_arrives() -> None:
    chains = lt.Chains()
    assert chains.put_request("x", ask("x", "d", "a")) == {"x": lt.Lead(complete=False)}
    assert chains.put_link(push("c", "d", 30)) == {}  # still incomplete: nothing moved
    assert chains.put_link(push("a", "b", 10)) == {}  # b is not reached yet (c's push is missing)
    assert chains.put_link(push("b", "c", 20)) == {"x": lt.Lead(committed_at=at(10), complete=True)}
    assert chains.put_link(push("zz", "yy", 1)) == {}  # another branch
    # a late push that extends the chain (a second push to the same sha, from another ref) moves it again
    assert chains.put_link(push("a", "c", 5)) == {"x": lt.Lead(committed_at=at(5), complete=True)}


def test_a_rollback_ships_nothing_and_a_withdrawn_request_is_told_none() -> None:
    chains = lt.Chains()
    chains.put_link(push("a", "b", 10))
    assert chains.put_request("x", ask("x", "b", "c", ships=False)) == {"x": lt.Lead(complete=True)}
    assert chains.put_request("x", ask("x", "b", "a")) == {"x": lt.Lead(committed_at=at(10), complete=True)}
    assert chains.put_request("x", None) == {"x": None}
    assert chains.put_request("x", None) == {}


SHAS = [f"s{i}" for i in range(10)]


@st.composite
def repositories(draw: st.DrawFn) -> tuple[list[lt.Link], list[lt.LeadRequest]]:
    """Pushes linking random shas (some starting a ref, some to the same sha from two refs) and requests."""
    links = []
    for i in range(draw(st.integers(0, 14))):
        after = draw(st.sampled_from(SHAS))
        before = draw(st.one_of(st.none(), st.sampled_from(SHAS)))
        minutes = draw(st.lists(st.integers(0, 300), max_size=3))
        link = push(before, after, *minutes)
        links.append(link.model_copy(update={"push_id": f"p{i}"}))
    requests = [
        ask(f"c{i}", draw(st.sampled_from(SHAS)), draw(st.one_of(st.none(), st.sampled_from(SHAS))),
            ships=draw(st.integers(0, 5)) > 0)
        for i in range(draw(st.integers(0, 6)))
    ]  # fmt: skip
    return links, requests


@settings(max_examples=300, deadline=None)
@given(case=repositories())
def test_lead_of_equals_the_batch_recomputation(case: tuple[list[lt.Link], list[lt.LeadRequest]]) -> None:
    links, requests = case
    pushes = [{"repository": "r", "before": link.before, "after": link.after,
               "commits": [] if link.earliest is None else [link.earliest], "id": link.push_id} for link in links]  # fmt: skip
    # the oracle's pushes carry only their earliest commit: the earliest of a set is the same
    changes = [{"change_id": r.change_id, "counted": True, "labels": {"repository": "r"}, "version": r.sha,
                "committed_at": None} for r in requests]  # fmt: skip
    history = {r.change_id: {"rollback": not r.ships, "previous": r.until} for r in requests}
    expected = recompute_leads(changes, pushes, history)
    assert {r.change_id: lt.lead_of(links, r).committed_at for r in requests} == expected


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    links, requests = draw(repositories())
    ops: list[tuple[str, Any]] = [("link", link) for link in links] + [("ask", r) for r in requests]
    for _ in range(draw(st.integers(0, 4))):
        cid = f"c{draw(st.integers(0, 6))}"
        ops.append(("ask", None if draw(st.booleans()) else ask(cid, draw(st.sampled_from(SHAS)), None)))
        if ops[-1][1] is None:
            ops[-1] = ("leave", cid)
    return draw(st.permutations(ops))


@settings(max_examples=400, deadline=None)
@given(ops=operations())
def test_the_chains_judge_again_exactly_what_the_one_pass_rule_says_after_every_input(
    ops: list[tuple[str, Any]],
) -> None:
    chains = lt.Chains()
    told: dict[str, lt.Lead | None] = {}
    links: dict[str, lt.Link] = {}
    requests: dict[str, lt.LeadRequest] = {}
    for kind, item in ops:
        if kind == "link":
            links[item.push_id] = item
            moved = chains.put_link(item)
        elif kind == "ask":
            requests[item.change_id] = item
            moved = chains.put_request(item.change_id, item)
        else:
            requests.pop(item, None)
            moved = chains.put_request(item, None)
        told.update(moved)
        expected = {cid: lt.lead_of(links.values(), r) for cid, r in requests.items()}
        assert {cid: lead for cid, lead in told.items() if lead is not None} == expected


# -- the stage -------------------------------------------------------------------------------------


def run_stage(
    inputs: list[tuple[str, lt.LeadInput]], table: DictTable | None = None, kept: int = KEPT
) -> dict[str, lt.Lead | None]:
    """Every input through the lead time stage, one batch each (`kept` repositories in memory); the
    newest verdict per change."""
    context, table = FakeContext(), table if table is not None else DictTable()
    stage = LeadTime(context, NAMES, {"lead-time": table}, chains=Recent(kept))  # type: ignore[arg-type]
    for offset, (repository, item) in enumerate(inputs):
        asyncio.run(context.run(stage, [record(NAMES.lead, repository, item.model_dump_json(), offset=offset)]))
    newest: dict[str, lt.LeadVerdict] = {}
    for _, value in context.to(NAMES.lead_verdicts):
        verdict = lt.LeadVerdict.model_validate_json(value)
        known = newest.get(verdict.change_id)
        if known is None or verdict.seq > known.seq:
            newest[verdict.change_id] = verdict
    return {cid: v.lead for cid, v in newest.items()}


@settings(max_examples=100, deadline=None)
@given(case=repositories(), seed=st.integers(0, 1000))
def test_the_stage_tells_every_deployment_its_final_lead_in_any_order_and_with_duplicates(
    case: tuple[list[lt.Link], list[lt.LeadRequest]], seed: int
) -> None:
    links, requests = case
    rnd = random.Random(seed)
    inputs = [("r", lt.LeadInput(link=link)) for link in links] + [("r", lt.LeadInput(request=r)) for r in requests]
    inputs += [inputs[rnd.randrange(len(inputs))] for _ in range(len(inputs) // 3)] if inputs else []
    rnd.shuffle(inputs)
    assert run_stage(inputs) == {r.change_id: lt.lead_of(links, r) for r in requests}
    # one repository in memory, another one's pushes in between: "r" is read again from its table
    other = [("q", lt.LeadInput(link=push(f"o{i}", f"p{i}", i))) for i in range(len(inputs))]
    mixed = [item for pair in zip(inputs, other, strict=True) for item in pair]
    assert run_stage(mixed, kept=1) == {r.change_id: lt.lead_of(links, r) for r in requests}


def test_a_replayed_input_sends_its_verdicts_again_and_a_redelivered_one_nothing() -> None:
    context, table = FakeContext(), DictTable()
    stage = LeadTime(context, NAMES, {"lead-time": table})  # type: ignore[arg-type]
    first = record(NAMES.lead, "r", lt.LeadInput(request=ask("x", "b", "a")).model_dump_json(), 5)
    second = record(NAMES.lead, "r", lt.LeadInput(link=push("a", "b", 10)).model_dump_json(), 6)
    assert asyncio.run(context.run(stage, [first, second])) == ["applied", "applied"]
    sent = len(context.sent)
    assert asyncio.run(context.run(stage, [second])) == ["replayed"]  # a crash after the state was saved
    assert len(context.sent) == sent + 1
    later = record(NAMES.lead, "r", second.value or b"", 40)
    assert asyncio.run(context.run(stage, [later])) == ["duplicate"]
    # a new consumer generation reads the repository back from the table and says the same
    context.generation += 1
    again = record(NAMES.lead, "r", lt.LeadInput(request=ask("y", "b", "a")).model_dump_json(), 41)
    assert asyncio.run(context.run(stage, [again])) == ["applied"]
    assert lt.LeadVerdict.model_validate_json(context.sent[-1][2]).lead == lt.Lead(committed_at=at(10), complete=True)


def test_pushes_and_requests_past_the_horizon_are_forgotten() -> None:
    table = DictTable()
    day = 24 * 60
    told = run_stage([("r", lt.LeadInput(link=push("a", "b", 10))), ("r", lt.LeadInput(request=ask("x", "b", "a", minute=20))),
                      ("r", lt.LeadInput(link=push("c", "d", 100 * day))),
                      ("r", lt.LeadInput(request=ask("y", "d", "c", minute=100 * day)))], table)  # fmt: skip
    assert told["x"] == lt.Lead(committed_at=at(10), complete=True)
    kept = sorted(k.decode().removeprefix("1:r|") for k in table)
    assert kept == ["l|d|c>d", "m", "r|y"]
