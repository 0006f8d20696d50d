"""Fault scenarios on a cluster of three brokers (topics replicated three times, `min.insync.replicas=2`).

Each runs the trust traffic through a gateway and two workers on `OwnCluster` while a broker fails,
then checks what every trust scenario checks (tests/trust/test_faults.py `Run.check`: the outputs
equal the recomputation, lag back to 0) and that every request answered 202 is on the raw topic.
They run in `make trust` only (a cluster takes three JVMs).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import OwnCluster, Stack
from tests.trust.test_faults import FULL, Run, gateway_check
from tests.trust.traffic import integrations_yaml

# Skipped before the cluster fixture starts three brokers: these run in `make trust` only.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not FULL, reason="runs in `make trust` (INCIDENTFLOW_TRUST=full)"),
]

PARTITIONS = 6
EVENTS = 20_000
AWAY_SECONDS = 12
"""How long a broker stays away: longer than a broker's session with the controllers (9 s) and than
the workers' sessions (6 s), so leaders move and groups rebalance."""


def start(stack_factory: Any, cluster: OwnCluster, name: str, seed: int) -> Run:
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS).on(cluster)
    run = Run(stack, name, EVENTS, seed)
    stack.start_gateway(INCIDENTFLOW_PUBLISH_TIMEOUT_SECONDS="2")
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    return run


def answers_between(run: Run, action: Any) -> dict[str, int]:
    """The answers the gateway gave while `action` ran."""
    before = Counter(str(a.status) for a in run.sender.attempts)
    action()
    return dict(Counter(str(a.status) for a in run.sender.attempts) - before)


def test_the_raw_topics_partition_leader_killed(stack_factory: Any, own_cluster: OwnCluster) -> None:
    run = start(stack_factory, own_cluster, "cluster-leader-sigkill", seed=601)
    run.sender.wait_for(0.4)
    leaders = Counter(leader for _, leader, _, _ in own_cluster.partitions(f"{run.stack.namespace}.raw"))
    victim = leaders.most_common(1)[0][0]
    own_cluster.run("kill", str(victim))
    time.sleep(AWAY_SECONDS)
    moved = Counter(leader for _, leader, _, _ in own_cluster.partitions(f"{run.stack.namespace}.raw"))
    own_cluster.run("start", str(victim))
    assert victim not in moved, f"node {victim} still leads raw partitions after it was killed: {moved}"
    run.check(gateway_check, killed_node=victim, raw_partitions_it_led=leaders[victim], leaders_after=dict(moved))


def test_the_active_controller_killed(stack_factory: Any, own_cluster: OwnCluster) -> None:
    run = start(stack_factory, own_cluster, "cluster-controller-sigkill", seed=602)
    run.sender.wait_for(0.4)
    victim = own_cluster.active_controller()
    own_cluster.run("kill", str(victim))
    time.sleep(AWAY_SECONDS)
    successor = own_cluster.active_controller()
    own_cluster.run("start", str(victim))
    assert successor != victim
    run.check(gateway_check, killed_controller=victim, next_controller=successor)


def test_a_rolling_restart_of_every_broker(stack_factory: Any, own_cluster: OwnCluster) -> None:
    run = start(stack_factory, own_cluster, "cluster-rolling-restart", seed=603)
    run.sender.wait_for(0.2)
    restarted = []
    for node in OwnCluster.NODES:  # as an operator does: one node at a time, the next once every replica is back
        own_cluster.run("stop", str(node))
        time.sleep(2)
        own_cluster.run("start", str(node))
        own_cluster.wait_in_sync(run.stack.namespace)
        restarted.append(run.sender.accepted)
    run.check(gateway_check, restarted_at_accepted=restarted)


def test_a_broker_paused_past_its_session(stack_factory: Any, own_cluster: OwnCluster) -> None:
    run = start(stack_factory, own_cluster, "cluster-broker-sigstop", seed=604)
    run.sender.wait_for(0.4)
    leaders = Counter(leader for _, leader, _, _ in own_cluster.partitions(f"{run.stack.namespace}.raw"))
    victim = leaders.most_common(1)[0][0]
    own_cluster.run("pause", str(victim))
    time.sleep(AWAY_SECONDS + 8)
    own_cluster.run("resume", str(victim))
    own_cluster.wait_in_sync(run.stack.namespace)
    run.check(gateway_check, paused_node=victim, paused_seconds=AWAY_SECONDS + 8)


def test_two_brokers_down_gateway_answers_503_until_one_returns(stack_factory: Any, own_cluster: OwnCluster) -> None:
    run = start(stack_factory, own_cluster, "cluster-two-down", seed=605)
    run.sender.wait_for(0.4)
    first, second = 2, 3

    def two_down() -> None:
        own_cluster.run("kill", str(first))
        own_cluster.run("kill", str(second))
        time.sleep(1)  # answers to what the cluster acked just before
        return None

    answers_between(run, two_down)
    during = answers_between(run, lambda: time.sleep(AWAY_SECONDS))
    own_cluster.run("start", str(first))
    after_one = answers_between(run, lambda: time.sleep(AWAY_SECONDS))
    own_cluster.run("start", str(second))
    assert during.get("503", 0) > 0 and not during.get("202"), f"with one broker of three: {during}"
    assert after_one.get("202", 0) > 0, f"with two brokers of three back: {after_one}"
    run.check(gateway_check, answers_with_one_broker=during, answers_with_two=after_one)
