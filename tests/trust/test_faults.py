"""Fault scenarios: real processes, a real broker, and the end state against the batch recomputation.

Each scenario sends the generated traffic (every source, duplicates, shuffled) through the
gateway while something fails, then checks: the incidents, live correlations and metric rows on
Kafka equal `tests/trust/expected.py` exactly (lost = 0, double-counted = 0, wrong = 0), and the
workers' consumer lag returns to zero. Sizes: `INCIDENTFLOW_TRUST=full` (make trust) sends
100,000 events through the SIGKILL scenario and 20,000 through the others; the short version
(make test) sends a few thousand through the worker SIGKILL, the broker restart and the poison
records.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from incidentflow.runtime.pauses import EXIT_PAUSED
from incidentflow.runtime.store import EXIT_STORE_CORRUPT
from tests.integration.conftest import REPO, OwnBroker, Process, Stack
from tests.scenario import deliveries
from tests.trust.expected import Expected, expect
from tests.trust.harness import (
    Sender,
    differences,
    elven_received,
    raw_request_ids,
    read_all,
    record,
    settle,
    tally,
    wait_lag_zero,
)
from tests.trust.traffic import generate, integrations_yaml, span_days

pytestmark = pytest.mark.integration

FULL = os.environ.get("INCIDENTFLOW_TRUST") == "full"
PARTITIONS = 6
SETTLE_SECONDS = 1200 if FULL else 300


def size(full: int, short: int) -> int:
    return full if FULL else short


def only_in_full() -> None:
    if not FULL:
        pytest.skip("runs in `make trust` (INCIDENTFLOW_TRUST=full)")


class Run:
    """One scenario: its stack, traffic, sender and live workers."""

    def __init__(self, stack: Stack, name: str, events: int, seed: int) -> None:
        self.stack, self.name = stack, name
        self.webhooks = generate(seed, events)
        # The scenarios compare every figure with a recomputation that keeps everything, so the
        # workers' state horizon is set just longer than the distance between any two event days
        # of the traffic (its span, and the Elven events at the gateway's now, 40 days after its
        # start): the 100,000 events of the SIGKILL scenario span 111 days, delivered within
        # minutes and out of order. The horizon itself is tested in tests/*/test_horizon.py.
        self.horizon_days = span_days(events) + 60
        self.deliveries = deliveries(self.webhooks, seed=seed + 1)
        self.workers: dict[int, Process] = {}
        self.ports: dict[int, int] = {}
        self.started = time.monotonic()
        self.sender = Sender(lambda: stack.gateway_url, self.deliveries)

    def start_worker(self, index: int) -> None:
        self.workers[index] = self.stack.start_worker(index, INCIDENTFLOW_STATE_HORIZON_DAYS=str(self.horizon_days))
        self.ports[index] = self.stack.worker_ports[-1]

    def stop_worker(self, index: int, sig: int = signal.SIGTERM) -> None:
        self.workers.pop(index).stop(sig)
        self.ports.pop(index)

    def dump_tasks(self) -> None:
        """Every live worker writes the stack of each of its tasks to its log (mode's SIGUSR1): what
        a stuck worker was waiting for."""
        for process in self.workers.values():
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGUSR1)
        time.sleep(3)

    def check(self, after_sending: Callable[[Run], dict[str, Any]] | None = None, **figures: Any) -> dict[str, Any]:
        """Waits for the end state, compares it, records the figures and asserts the pass criterion.

        `after_sending` runs once every delivery is accepted (its figures join the others)."""
        self.sender.join()
        assert self.sender.gave_up == 0, self.sender.statuses
        if after_sending is not None:
            figures.update(after_sending(self))
        expected: Expected = expect(self.webhooks, elven_received(self.stack.bootstrap, self.stack.namespace))
        observed = settle(self.stack.bootstrap, self.stack.namespace, expected, SETTLE_SECONDS)
        counts = tally(observed, expected)
        lag_zero, lag_left = wait_lag_zero(lambda: list(self.ports.values()))
        result = {
            "scenario": self.name,
            "events": expected.events,
            "webhooks": len(self.webhooks),
            "deliveries": len(self.deliveries),
            "statuses": self.sender.statuses,
            "seconds": round(time.monotonic() - self.started, 1),
            "outputs": counts,
            "lost": sum(c["lost"] for c in counts.values()),
            "double_counted": sum(c["double"] for c in counts.values()),
            "wrong": sum(c["wrong"] for c in counts.values()),
            "lag_back_to_zero": lag_zero,
            **({"lag_left": lag_left} if not lag_zero else {}),
            **figures,
        }
        result["passed"] = result["lost"] == result["double_counted"] == result["wrong"] == 0 and lag_zero
        if not result["passed"]:
            result["differences"] = differences(observed, expected)
        record(result)
        if not result["passed"]:
            self.dump_tasks()
        assert counts and result["passed"], json.dumps(result, indent=1, default=str)
        return result


def gateway_check(run: Run) -> dict[str, int]:
    """Every request that got a 202 is on the raw topic; what else is there came from requests answered otherwise."""
    raw = raw_request_ids(run.stack.bootstrap, run.stack.namespace)
    accepted = run.sender.accepted_ids
    missing = accepted - raw.keys()
    assert not missing, f"{len(missing)} requests answered 202 are not on the raw topic"
    return {"accepted_requests": len(accepted), "accepted_missing_from_raw": len(missing),
            "raw_records_without_202": sum(n for rid, n in raw.items() if rid not in accepted),
            "raw_records_twice": sum(n - 1 for n in raw.values() if n > 1)}  # fmt: skip


def test_worker_sigkilled_three_times_loses_nothing(stack_factory: Any) -> None:
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "worker-sigkill", size(100_000, 3000), seed=101)
    stack.start_gateway()
    for i in range(3):
        run.start_worker(i)
    run.sender.start()
    kills = []
    for share in (0.25, 0.5, 0.75):
        run.sender.wait_for(share)
        run.stop_worker(1, signal.SIGKILL)
        kills.append(run.sender.accepted)
        time.sleep(2)
        run.start_worker(1)
    run.check(kills_at_accepted=kills, workers=3)


def test_workers_scaled_one_to_three_to_one_lose_nothing(stack_factory: Any) -> None:
    only_in_full()
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "scale-1-3-1", 20_000, seed=201)
    stack.start_gateway()
    run.start_worker(0)
    run.sender.start()
    run.sender.wait_for(0.3)
    run.start_worker(1)
    run.start_worker(2)
    run.sender.wait_for(0.65)
    run.stop_worker(2)
    run.stop_worker(1)
    run.check(workers="1 -> 3 -> 1")


def test_broker_restart_gateway_answers_503_and_loses_nothing(own_broker: OwnBroker, stack_factory: Any) -> None:
    # own_broker first: torn down last, so the workers stop while their broker is still there
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    stack.bootstrap = own_broker.bootstrap
    run = Run(stack, "broker-restart", size(20_000, 3000), seed=301)
    stack.start_gateway(INCIDENTFLOW_PUBLISH_TIMEOUT_SECONDS="2")
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.4)
    own_broker.stop()  # returns once the broker process is gone
    time.sleep(1)  # answers to what the broker acked just before it went
    before = Counter(str(a.status) for a in run.sender.attempts)
    time.sleep(10)
    during = Counter(str(a.status) for a in run.sender.attempts) - before
    own_broker.start()
    assert during.get("503", 0) > 0 and not during.get("202"), f"while the broker was away: {dict(during)}"
    run.check(gateway_check, answers_while_broker_away=dict(during), broker_away_seconds=11)


def test_gateway_sigkilled_mid_request_loses_nothing(stack_factory: Any) -> None:
    only_in_full()
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "gateway-sigkill", 20_000, seed=401)
    gateway = stack.start_gateway()
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.5)
    gateway.stop(signal.SIGKILL)  # with 16 requests in flight
    time.sleep(2)
    stack.start_gateway(port=stack.gateway_port)
    run.check(gateway_check)


def test_a_worker_paused_past_its_session_writes_nothing_twice(stack_factory: Any) -> None:
    only_in_full()
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "worker-sigstop", 20_000, seed=701)
    stack.start_gateway()
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.4)
    # Frozen with records in hand past its session (6 s): the group gives its partitions to worker 0, and
    # when it thaws it still holds a batch it had begun. It must stop before it writes any of it (exit
    # status 75), and is started again as its supervisor would.
    zombie = run.workers[1].popen
    zombie.send_signal(signal.SIGSTOP)
    time.sleep(20)
    zombie.send_signal(signal.SIGCONT)
    status = zombie.wait(timeout=30)
    assert status == EXIT_PAUSED, f"the thawed worker went on (exit status {status})"
    run.workers.pop(1)
    run.ports.pop(1)
    run.start_worker(1)
    run.check(paused_seconds=20, session_timeout_seconds=6, zombie_exit_status=status)


def test_a_worker_whose_store_was_deleted_restores_it(stack_factory: Any) -> None:
    only_in_full()
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "worker-store-deleted", 20_000, seed=702)
    stack.start_gateway()
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.5)
    run.stop_worker(1)
    data = stack.workdir / "worker-1-data"
    deleted = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    shutil.rmtree(data)
    run.start_worker(1)  # on an empty directory: every table restored from its changelog
    run.check(deleted_store_bytes=deleted)


def test_a_worker_whose_store_was_corrupted_rebuilds_it(stack_factory: Any) -> None:
    only_in_full()
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "worker-store-corrupted", 20_000, seed=703)
    stack.start_gateway()
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.5)
    run.stop_worker(1)
    # Half the SST files garbled whole (found on opening), half inside their data blocks (found by the
    # first read of a damaged block, which stops the worker: a supervisor starts it again).
    tables = sorted((stack.workdir / "worker-1-data").rglob("*.sst"))
    for i, sst in enumerate(tables):
        size = sst.stat().st_size
        offset, length = (0, size) if i % 2 == 0 else (size // 4, max(1, size // 4))
        with sst.open("r+b") as file:
            file.seek(offset)
            file.write(os.urandom(length))
    # Worker 1 starts alone, so that it is given every partition, its damaged ones among them (a group
    # does not give a member that comes back the partitions it had); worker 0 joins once it runs.
    run.stop_worker(0)
    restarts = 0

    def supervise() -> None:
        nonlocal restarts
        for _ in range(10):
            process = run.workers.get(1)
            if process is not None and process.popen.poll() is None:
                return
            if process is not None:
                assert process.popen.returncode == EXIT_STORE_CORRUPT, process.log.read_text()[-3000:]
                run.workers.pop(1)
                run.ports.pop(1)
                restarts += 1
            try:
                run.start_worker(1)
            except AssertionError as failed:  # it found a damaged block while starting
                assert f"exited with {EXIT_STORE_CORRUPT}" in str(failed), str(failed)[-3000:]
                restarts += 1
        raise AssertionError("worker 1 kept stopping")

    supervise()
    run.start_worker(0)
    # Supervised until the end state is checked: a damaged block may be met at any first read of it.
    checked = threading.Event()

    def supervisor() -> None:
        while not checked.wait(1):
            supervise()

    watching = threading.Thread(target=supervisor, daemon=True)
    watching.start()

    try:
        result = run.check(sst_files=len(tables), garbled_whole=len(tables[::2]), garbled_inside=len(tables[1::2]))
    finally:
        checked.set()
        watching.join()
    result["stores_set_aside"] = (stack.workdir / "worker-1.log").read_text(errors="replace").count("is corrupt (")
    result["restarts_after_a_damaged_read"] = restarts
    record(result)
    assert result["stores_set_aside"] > 0, "no store was found corrupt"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sustained_rate() -> float:
    """The highest rate the pipeline sustained in the last load search (bench/results/load.json)."""
    found = REPO / "bench/results/load.json"
    if not found.exists():
        pytest.fail("no bench/results/load.json: run bench/load.py --search first", pytrace=False)
    return float(json.loads(found.read_text())["sustained_rate"])


def test_a_burst_at_ten_times_the_sustained_rate(stack_factory: Any) -> None:
    """For a minute, ten times the rate the pipeline sustains (as many webhooks as that, sent by 128
    senders at once): every answer is 202 (or 204), or 429/503 with Retry-After; every 202 is processed;
    memory stays bounded while the worker works off the backlog."""
    only_in_full()
    target = sustained_rate() * 10
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "burst", int(target * 60), seed=801)
    run.sender.concurrency = 128
    gateway = stack.start_gateway()
    run.start_worker(0)
    peaks = {"gateway": 0.0, "worker": 0.0}
    sent_from = time.monotonic()
    run.sender.start()

    def sample() -> None:
        peaks["gateway"] = max(peaks["gateway"], rss_mib(gateway.popen.pid))
        peaks["worker"] = max(peaks["worker"], rss_mib(run.workers[0].popen.pid))

    while run.sender.thread is not None and run.sender.thread.is_alive():
        sample()
        time.sleep(1)
    sending = time.monotonic() - sent_from
    busy = [a for a in run.sender.attempts if a.at - sent_from <= 60]
    odd = Counter(str(a.status) for a in run.sender.attempts
                  if a.status not in (202, 204) and not (a.status in (429, 503) and a.retry_after))  # fmt: skip
    assert not odd, f"answers that are neither accepted nor 429/503 with Retry-After: {dict(odd)}"

    def drained(_: Run) -> dict[str, Any]:
        sample()
        return {"worker_rss_peak_mib": round(peaks["worker"], 1), "gateway_rss_peak_mib": round(peaks["gateway"], 1)}

    result = run.check(drained, target_rate=round(target, 1), first_minute_rate=round(len(busy) / 60, 1),
                       sending_seconds=round(sending, 1), senders=128)  # fmt: skip
    # Bounded: the worker's stores share one budget (256 MiB) and the gateway holds no backlog of its own.
    assert result["worker_rss_peak_mib"] < 1024 and result["gateway_rss_peak_mib"] < 512, result


POISON = [b"not json", b"\xff\xfe binary", b'{"json": "of the wrong shape"}', b"[1, 2, 3]", b""]
INPUTS = ("raw", "alerts", "changes", "metric-contributions", "correlation-scope", "correlation-suspects",
          "correlation-verdicts", "deployment-history", "deployment-verdicts", "lead-time", "lead-verdicts")  # fmt: skip


def test_poison_records_on_every_topic_are_dead_lettered_and_the_rest_processed(stack_factory: Any) -> None:
    stack: Stack = stack_factory(integrations_yaml(), partitions=PARTITIONS)
    run = Run(stack, "poison", size(20_000, 3000), seed=501)
    stack.start_gateway()
    run.start_worker(0)
    run.start_worker(1)
    run.sender.start()
    run.sender.wait_for(0.5)
    asyncio.run(_produce_poison(stack))
    result = run.check(poison_per_topic=len(POISON) * PARTITIONS, topics=len(INPUTS))
    dead = [json.loads(r.value) for r in read_all(stack.bootstrap, f"{stack.namespace}.deadletter")]
    # Dead-lettering is at least once, like all processing: a record read again after a rebalance
    # is dead-lettered again, under the same key (its origin), so readers can tell.
    origins = {(d["topic"], d["partition"], d["offset"]) for d in dead}
    by_topic = Counter(topic.removeprefix(f"{stack.namespace}.") for topic, _, _ in origins)
    assert by_topic == dict.fromkeys(INPUTS, len(POISON) * PARTITIONS), by_topic
    assert all(d["reason"] and d["key"] == "poison" for d in dead)
    result["dead_lettered"] = dict(by_topic)
    result["dead_letter_records"] = len(dead)
    record(result)


async def _produce_poison(stack: Stack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for name in INPUTS:
            for partition in range(PARTITIONS):
                for value in POISON:
                    await producer.send_and_wait(f"{stack.namespace}.{name}", value, key=b"poison", partition=partition)
    finally:
        await producer.stop()
