"""The first slice end to end, with real processes on a real broker: Elven webhooks -> incidents and MTTR."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from incidentflow.domain.envelope import RawEnvelope
from tests.integration.conftest import Stack, read_topic, scrape

pytestmark = pytest.mark.integration

TOKEN = "it-elven-token-0123456789"
INTEGRATIONS = f"""
integrations:
  - name: shop
    source: elven
    token: {TOKEN}
    labels: {{service: checkout, env: prod}}
"""


def test_alarmed_then_resolved_gives_a_resolved_incident_and_mttr(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker()
    url = f"{stack.gateway_url}/v1/ingest/elven/{TOKEN}"
    body = {"title": "Checkout 5xx", "external_aggregate_key": "e2e-1", "severity": "high"}

    opened = httpx.post(url, json={**body, "action": "alarmed"}, timeout=30)
    time.sleep(1.5)
    resolved = httpx.post(url, json={**body, "action": "resolved"}, timeout=30)
    assert (opened.status_code, resolved.status_code) == (202, 202), stack.logs()

    raw = read_topic(stack.bootstrap, f"{stack.namespace}.raw", lambda r: len(r) >= 2)
    received = {e.request_id: e.received_at for e in (RawEnvelope.model_validate_json(r.value) for r in raw)}
    expected_ttr = (received[resolved.json()["request_id"]] - received[opened.json()["request_id"]]).total_seconds()

    def done(records: list[Any]) -> bool:
        return any(json.loads(r.value)["status"] == "resolved" for r in records)

    records = read_topic(stack.bootstrap, f"{stack.namespace}.incidents", done)
    assert done(records), stack.logs()
    incident = json.loads(records[-1].value)
    assert records[-1].key == b"shop:e2e-1"
    assert incident["status"] == "resolved"
    assert incident["time_to_restore_seconds"] == pytest.approx(expected_ttr, abs=1e-6)
    assert incident["severity"] == "high" and incident["labels"]["service"] == "checkout"

    series = 'incidentflow_mttr_seconds{env="prod",service="checkout",severity="high",window="1d"}'
    metrics_url = f"http://127.0.0.1:{stack.worker_ports[0]}/metrics"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and series not in scrape(metrics_url):
        time.sleep(0.5)
    samples = scrape(metrics_url)
    assert samples[series] == pytest.approx(expected_ttr, abs=1e-3), stack.logs()
    assert samples['incidentflow_incidents_open{env="prod",service="checkout",severity="high"}'] == 0


def test_bad_input_gets_a_clear_error_and_never_reaches_kafka(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    url = f"{stack.gateway_url}/v1/ingest/elven/{TOKEN}"

    malformed = httpx.post(url, content=b'{"action": "alarmed",', timeout=30)
    invalid = httpx.post(url, json={"action": "alarmed", "severity": "sev1"}, timeout=30)
    unknown = httpx.post(f"{stack.gateway_url}/v1/ingest/elven/not-a-token-at-all", json={}, timeout=30)
    good = httpx.post(url, json={"action": "alarmed", "external_aggregate_key": "ok"}, timeout=30)

    assert malformed.status_code == 400
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"external_aggregate_key", "severity"}
    assert unknown.status_code == 401
    assert good.status_code == 202

    raw = read_topic(stack.bootstrap, f"{stack.namespace}.raw", lambda r: len(r) >= 2, timeout=5)
    assert [RawEnvelope.model_validate_json(r.value).request_id for r in raw] == [good.json()["request_id"]]
    log = stack.logs()
    assert TOKEN not in log and "not-a-token-at-all" not in log
