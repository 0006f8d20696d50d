"""A poison record on a canonical topic is dead-lettered with its reason; its partition keeps flowing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import Stack, read_topic
from tests.integration.helpers import latest_by_key

pytestmark = pytest.mark.integration


def alert(action: str, minute: int) -> bytes:
    return json.dumps({
        "event_id": f"p-{action}-{minute}", "aggregate_id": "producer:db-1", "integration": "producer",
        "source": "prometheus", "external_aggregate_key": "db-1", "action": action,
        "occurred_at": f"2026-11-01T12:{minute:02d}:00Z", "received_at": f"2026-11-01T12:{minute:02d}:01Z",
        "severity": "high", "labels": {"service": "db"},
    }).encode()  # fmt: skip


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=0)
    finally:
        await producer.stop()


def test_poison_records_are_dead_lettered_and_the_rest_is_processed(stack_factory: Any) -> None:
    stack: Stack = stack_factory("integrations: []\n", partitions=2)
    stack.start_worker()
    poison = [
        b"\xff\xfe not json at all",
        b'{"event_id": "x", "action": "explode"}',
        json.dumps(
            {
                "event_id": "y",
                "aggregate_id": "other:db-1",
                "integration": "producer",
                "source": "s",
                "external_aggregate_key": "db-1",
                "action": "open",
                "occurred_at": "2026-11-01T12:00:00Z",
                "received_at": "2026-11-01T12:00:00Z",
            }
        ).encode(),  # fmt: skip
    ]
    alerts = f"{stack.namespace}.alerts"
    asyncio.run(produce(stack.bootstrap, alerts, [
        (b"producer:db-1", alert("open", 0)), *((b"producer:db-1", p) for p in poison), (b"producer:db-1", alert("resolve", 30)),
    ]))  # fmt: skip
    asyncio.run(produce(stack.bootstrap, f"{stack.namespace}.raw", [(b"x", b'{"v": 1, "source": "elven"}')]))

    incidents = read_topic(
        stack.bootstrap, f"{stack.namespace}.incidents",
        lambda r: latest_by_key(r).get("producer:db-1", {}).get("status") == "resolved",
    )  # fmt: skip
    incident = latest_by_key(incidents)["producer:db-1"]
    assert (incident["status"], incident["time_to_restore_seconds"]) == ("resolved", 1800.0), stack.logs()[-3000:]

    dead = [
        json.loads(r.value) for r in read_topic(stack.bootstrap, f"{stack.namespace}.deadletter", lambda r: len(r) >= 4)
    ]
    by_origin = {(d["topic"], d["offset"]): d for d in dead}
    assert set(by_origin) == {(alerts, 1), (alerts, 2), (alerts, 3), (f"{stack.namespace}.raw", 0)}
    assert by_origin[(alerts, 1)]["value_base64"] and by_origin[(alerts, 1)]["kind"] == "invalid"
    assert "not a canonical alert event" in by_origin[(alerts, 2)]["reason"]
    assert "aggregate_id" in by_origin[(alerts, 3)]["reason"]
    assert "not a raw envelope" in by_origin[(f"{stack.namespace}.raw", 0)]["reason"]
    assert all(d["partition"] == 0 and d["dead_lettered_at"] for d in dead)
