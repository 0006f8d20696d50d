"""CDEvents end to end on a real broker: the same deployment and incident in each CloudEvents mode
(HTTP binary, structured and batch, and Kafka straight to `<namespace>.cdevents`) give the same
incident, correlation and MTTR as the native format; every output record reads back as a CloudEvent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.integration.conftest import Stack, read_topic

pytestmark = pytest.mark.integration

NATIVE = "it-native-token-0123456789"
CE = "it-cloudevents-token-0123456789"
INTEGRATIONS = f"""
integrations:
  - {{name: native, source: native, token: {NATIVE}, rate_limit_per_minute: 100000}}
  - {{name: pipeline, source: cloudevents, token: {CE}, default_severity: high, rate_limit_per_minute: 100000}}
"""
DEPLOYED, DETECTED, RESOLVED = "2026-11-01T10:00:00Z", "2026-11-01T10:07:00Z", "2026-11-01T10:49:30Z"
MODES = ("binary", "structured", "batch", "kafka")


def cdevents(mode: str) -> list[dict[str, Any]]:
    """The deployment, the incident opening and its resolution, as CDEvents of one mode's service."""
    service, env = f"service/{mode}", {"id": "prod"}

    def event(kind: str, at: str, subject: dict[str, Any]) -> dict[str, Any]:
        return {"context": {"specversion": "0.5.1", "id": f"{mode}-{kind}", "source": f"/ci/{mode}",
                            "type": f"dev.cdevents.{kind}.0.3.0", "timestamp": at}, "subject": subject}  # fmt: skip

    incident = {"id": f"incident/{mode}", "content": {"environment": env, "service": {"id": service},
                                                        "description": "checkout 5xx"}}  # fmt: skip
    return [
        event("service.deployed", DEPLOYED, {"id": service, "content": {"environment": env, "artifactId": "pkg:a@1"}}),
        event("incident.detected", DETECTED, incident),
        event("incident.resolved", RESOLVED, incident),
    ]


def cloud_event(data: dict[str, Any]) -> CloudEvent:
    c = data["context"]
    return CloudEvent({"id": c["id"], "source": c["source"], "type": c["type"], "specversion": "1.0",
                       "datacontenttype": "application/json"}, data)  # fmt: skip


def structured(data: dict[str, Any]) -> dict[str, Any]:
    c = data["context"]
    return {"specversion": "1.0", "id": c["id"], "source": c["source"], "type": c["type"], "data": data}


def post_mode(url: str, mode: str) -> list[int]:
    events = cdevents(mode)
    if mode == "binary":
        posts = []
        for data in events:
            c = data["context"]
            headers = {"ce-specversion": "1.0", "ce-id": c["id"], "ce-source": c["source"], "ce-type": c["type"],
                       "content-type": "application/json"}  # fmt: skip
            posts.append(httpx.post(url, content=json.dumps(data), headers=headers, timeout=30))
    elif mode == "structured":
        headers = {"content-type": "application/cloudevents+json"}
        posts = [httpx.post(url, content=json.dumps(structured(d)), headers=headers, timeout=30) for d in events]
    else:
        headers = {"content-type": "application/cloudevents-batch+json"}
        batches = ([structured(d) for d in events[:2]], [structured(events[2])])
        posts = [httpx.post(url, content=json.dumps(b), headers=headers, timeout=30) for b in batches]
    return [p.status_code for p in posts]


def post_native(url: str) -> list[int]:
    labels = {"service": "service/native", "env": "prod"}
    alert = {"external_aggregate_key": "incident/native", "severity": "high", "title": "checkout 5xx", "labels": labels}
    bodies = [{"change_key": "deploy-1", "status": "done", "occurred_at": DEPLOYED, "labels": labels},
              {**alert, "action": "open", "occurred_at": DETECTED},
              {**alert, "action": "resolve", "occurred_at": RESOLVED}]  # fmt: skip
    return [httpx.post(url, json=body, timeout=30).status_code for body in bodies]


def produce_cdevents(bootstrap: str, topic: str) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for n, data in enumerate(cdevents("kafka")):
                event = cloud_event(data)
                message = (kafka.to_binary if n % 2 else kafka.to_structured)(event, JSONFormat())
                headers = list(message.headers.items())
                await producer.send_and_wait(topic, message.value, key=b"incident/kafka", headers=headers)
        finally:
            await producer.stop()

    asyncio.run(run())


def latest(records: list[Any]) -> dict[str, dict[str, Any]]:
    return {r.key.decode(): json.loads(r.value) for r in records if r.value is not None}


def by_service(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{row['metric']}|{row['service']}": row for row in rows.values()}


def test_every_cloudevents_mode_gives_what_the_native_format_gives(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker(INCIDENTFLOW_CDEVENTS_DEFAULT_SEVERITY="high")
    assert post_native(f"{stack.gateway_url}/v1/events/{NATIVE}") == [202] * 3, stack.logs()
    for mode in MODES[:3]:
        assert set(post_mode(f"{stack.gateway_url}/v1/cloudevents/{CE}", mode)) == {202}, stack.logs()
    produce_cdevents(stack.bootstrap, f"{stack.namespace}.cdevents")
    services = ["native", *MODES]

    incidents = read_topic(stack.bootstrap, f"{stack.namespace}.incidents",
                           lambda r: sum(json.loads(x.value)["status"] == "resolved" for x in r) >= 5)  # fmt: skip
    resolved = {i["labels"]["service"].split("/")[1]: i for i in latest(incidents).values()}
    assert sorted(resolved) == sorted(services), stack.logs()

    def same(record: dict[str, Any]) -> dict[str, Any]:
        keep = ("status", "severity", "opened_at", "resolved_at", "episodes", "time_to_restore_seconds", "event_count")
        return {k: record[k] for k in keep}

    assert {s: same(resolved[s]) for s in services} == {s: same(resolved["native"]) for s in services}
    assert resolved["native"]["time_to_restore_seconds"] == 42.5 * 60

    correlations = latest(read_topic(stack.bootstrap, f"{stack.namespace}.correlations", lambda r: len(r) >= 5))
    found = {c["change_id"].split(":")[1].split("/")[-1].split("#")[0]: c for c in correlations.values()}
    assert len(found) == 5, correlations
    pair = ("delta_seconds", "score", "rank", "retracted", "incident_opened_at", "change_occurred_at")
    native = found.pop("deploy-1")
    assert {m: {k: c[k] for k in pair} for m, c in found.items()} == {m: {k: native[k] for k in pair} for m in MODES}

    def rows_done(records: list[Any]) -> bool:
        rows = by_service(latest(records))
        return all(rows.get(f"changes|service/{s}", {}).get("failed_changes") == 1 for s in services)

    rows = by_service(latest(read_topic(stack.bootstrap, f"{stack.namespace}.metrics", rows_done)))
    figures = ("count", "sum_seconds", "max_seconds", "changes", "failed_changes")
    for metric in ("mttr", "changes"):
        expected = {k: rows[f"{metric}|service/native"][k] for k in figures}
        assert {s: {k: rows[f"{metric}|service/{s}"][k] for k in figures} for s in MODES} == dict.fromkeys(
            MODES, expected
        ), rows

    # Every output record is a CloudEvent (Kafka binding, binary mode) whose data is the record.
    for topic, ce_type in (("incidents", "incident"), ("correlations", "correlation"), ("metrics", "metric")):
        for record in read_topic(stack.bootstrap, f"{stack.namespace}.{topic}", lambda r: len(r) > 0):
            message = kafka.KafkaMessage(dict(record.headers), record.key, record.value)
            event = kafka.from_binary(message, JSONFormat())
            assert event.get_type() == f"dev.incidentflow.{ce_type}.v1"
            assert event.get_source() == f"/incidentflow/{stack.namespace}"
            assert event.get_data() == json.loads(record.value)
