"""A committed offset beyond unprocessed records (what Faust can do in a rebalance) loses nothing.

The test makes the consumer group's committed offsets jump over records no worker processed, the
way Faust 0.15 sometimes does when a rebalance interrupts fetching, and checks that the worker
reads them anyway (from the positions it recorded itself) and says so in its metrics.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from incidentflow.runtime.positions import GapReader
from tests.integration.conftest import Stack, read_topic, scrape
from tests.integration.helpers import latest_by_key, post_all

pytestmark = pytest.mark.integration

TOKEN = "skip-native-token-0123456789"
INTEGRATIONS = f"integrations:\n  - {{name: skip, source: native, token: {TOKEN}}}\n"


def opens(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"event_id": f"{prefix}-{i}", "external_aggregate_key": f"{prefix}-{i}", "action": "open",
             "occurred_at": "2026-11-01T12:00:00Z", "labels": {"service": "db"}} for i in range(count)]  # fmt: skip


async def commit_to_end(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Commits the group's offsets of every partition to its end, as if everything had been processed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends))
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def test_records_behind_a_committed_offset_are_processed_anyway(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS, partitions=2)
    stack.start_gateway()
    worker = stack.start_worker(0)
    url = f"{stack.gateway_url}/v1/events/{TOKEN}"
    first = opens("before", 20)
    assert post_all(url, first) == {202: 20}
    incidents = f"{stack.namespace}.incidents"
    read_topic(stack.bootstrap, incidents, lambda rs: len(latest_by_key(rs)) == 20, timeout=90)
    time.sleep(1.5)  # positions are saved at most once a second
    worker.stop()

    skipped = opens("skipped", 20)
    assert post_all(url, skipped) == {202: 20}
    ends = asyncio.run(commit_to_end(stack.bootstrap, f"{stack.namespace}-app", f"{stack.namespace}.raw", 2))
    assert sum(ends.values()) == 40

    stack.start_worker(1)
    records = read_topic(stack.bootstrap, incidents, lambda rs: len(latest_by_key(rs)) == 40, timeout=120)
    assert sorted(latest_by_key(records)) == sorted(f"skip:{b['external_aggregate_key']}" for b in first + skipped)
    metrics_url = f"http://127.0.0.1:{stack.worker_ports[-1]}/metrics"
    samples = scrape(metrics_url)
    rewinds = sum(v for k, v in samples.items() if k.startswith("incidentflow_offset_rewinds_total") and ".raw" in k)
    assert rewinds >= 1, {k: v for k, v in samples.items() if "rewinds" in k}

    def raw_lag() -> dict[str, float]:
        return {
            k: v for k, v in scrape(metrics_url).items() if k.startswith("incidentflow_consumer_lag") and ".raw" in k
        }

    deadline = time.monotonic() + 60
    while (len(raw_lag()) != 2 or any(raw_lag().values())) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(raw_lag()) == 2 and not any(raw_lag().values()), raw_lag()  # both partitions, lag back to zero


def test_the_gap_reader_gives_exactly_the_records_in_a_range(kafka_bootstrap: str) -> None:
    """What a worker reads itself when its consumer skipped records: that range, in order, from the real broker."""
    topic = f"gap-{time.monotonic_ns()}"

    async def run() -> tuple[list[tuple[int, bytes | None, bytes | None]], list[int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode(), partition=0)
        finally:
            await producer.stop()
        reader = GapReader(kafka_bootstrap)
        middle = [(m.offset, m.key, m.value) async for m in reader.read(topic, 0, 3, 7)]
        tail = [m.offset async for m in reader.read(topic, 0, 8, 10)]
        return middle, tail

    middle, tail = asyncio.run(run())
    assert middle == [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(3, 7)]
    assert tail == [8, 9]
