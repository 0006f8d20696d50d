"""`incidentflow demo`: post real-looking Elven webhooks and show incidents and MTTR as they come back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer

from incidentflow.config import Settings
from incidentflow.topics import Topics


def _webhook(key: str, action: str, title: str, severity: str, service: str) -> dict[str, object]:
    return {
        "title": title,
        "description": f"{title}: synthetic check failing from 3 regions",
        "external_aggregate_key": key,
        "action": action,
        "severity": severity,
        "tags": [{"name": "service", "value": service}, {"name": "team", "value": "sre"}],
    }


def _show(incident: dict[str, object]) -> str:
    ttr = incident.get("time_to_restore_seconds")
    ttr_text = f"{ttr:.1f}s" if isinstance(ttr, float | int) else "-"
    return (
        f"  incident {incident['aggregate_id']:<40} {incident['status']:<9} severity={incident['severity']!s:<9} "
        f"episodes={len(incident['episodes'])}  time_to_restore={ttr_text}"  # type: ignore[arg-type]
    )


async def _demo(settings: Settings, gateway_url: str, worker_url: str, token: str) -> int:
    run = uuid.uuid4().hex[:6]
    checkout, payments = f"checkout-latency-{run}", f"payments-5xx-{run}"
    steps = [
        (_webhook(checkout, "alarmed", "Checkout p99 latency over 2s", "high", "checkout"), 0.0),
        (_webhook(payments, "alarmed", "Payments API 5xx rate over 5%", "critical", "payments"), 1.0),
        (_webhook(checkout, "alarmed", "Checkout p99 latency over 2s", "critical", "checkout"), 1.0),
        (_webhook(checkout, "resolved", "Checkout p99 latency over 2s", "critical", "checkout"), 2.0),
    ]
    consumer = AIOKafkaConsumer(
        Topics(settings.topic_namespace).incidents,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    try:
        # Wait until the consumer has its position so no record posted after this is missed.
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        async with httpx.AsyncClient(timeout=30.0) as client:
            print(f"posting {len(steps)} Elven webhooks to {gateway_url}/v1/ingest/elven/<token>")
            for body, pause in steps:
                await asyncio.sleep(pause)
                response = await client.post(f"{gateway_url}/v1/ingest/elven/{token}", json=body)
                print(
                    f"  {body['action']:<8} {body['external_aggregate_key']:<26} -> {response.status_code} {response.text}"
                )
            print("incidents from the incidents topic:")
            wanted = {f"demo-elven:{checkout}", f"demo-elven:{payments}"}
            latest: dict[str, dict[str, object]] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _settled(latest, checkout):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        incident = json.loads(record.value or b"{}")
                        if incident.get("aggregate_id") in wanted:
                            latest[str(incident["aggregate_id"])] = incident
                            print(_show(incident))
            if not _settled(latest, checkout):
                print("the worker did not publish the incidents within 60 s; is it running?")
                return 1
            print(f"MTTR from the worker's {worker_url}/metrics:")
            for _ in range(20):
                lines = [
                    line for line in (await client.get(f"{worker_url}/metrics")).text.splitlines()
                    if line.startswith(("incidentflow_mttr_seconds", "incidentflow_incidents_open"))
                ]  # fmt: skip
                if any(line.startswith("incidentflow_mttr_seconds") for line in lines):
                    break
                await asyncio.sleep(0.5)
            for line in lines:
                print(f"  {line}")
    finally:
        await consumer.stop()
    return 0


def _settled(latest: dict[str, dict[str, object]], checkout: str) -> bool:
    incident = latest.get(f"demo-elven:{checkout}")
    return len(latest) == 2 and incident is not None and incident["status"] == "resolved"


def run_demo(settings: Settings, gateway_url: str, worker_url: str, token: str) -> int:
    return asyncio.run(_demo(settings, gateway_url, worker_url, token))
