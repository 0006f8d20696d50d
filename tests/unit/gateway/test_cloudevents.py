"""The CloudEvents route in its three modes, and the label limit on every route (fake publisher)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from incidentflow import sources
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.tools.send import cloudevent_request
from tests.unit.gateway.test_app import FakePublisher, gateway_client

CE = "cloudevents-token-abcdefghijklmnop"
ELVEN = "elven-token-abcdefghijklmnop"
FLASHDUTY = "flashduty-token-abcdefghijklmnop"
INTEGRATIONS = f"""
integrations:
  - {{name: pipeline, source: cloudevents, token: {CE}, labels: {{team: sre}}, default_severity: high}}
  - {{name: shop-elven, source: elven, token: {ELVEN}, labels: {{service: shop}}}}
  - {{name: shop-changes, source: flashduty-change, token: {FLASHDUTY}}}
"""
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cloudevents"


def fixture(name: str) -> tuple[Any, dict[str, str]]:
    """A fixture body and its request headers."""
    body = json.loads((FIXTURES / f"{name}.json").read_text())
    return body, json.loads((FIXTURES / f"{name}.context.json").read_text())["headers"]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> Iterator[TestClient]:
    with gateway_client(INTEGRATIONS, publisher, max_labels=50) as c:
        yield c


def post(client: TestClient, body: Any, headers: dict[str, str], path: str = f"/v1/cloudevents/{CE}") -> Any:
    return client.post(path, content=json.dumps(body).encode(), headers=headers)


@pytest.mark.parametrize(
    "name", ["incident-detected-binary", "incident-reported-structured", "service-deployed-structured",
             "batch-detected-resolved"],
)  # fmt: skip
def test_each_mode_is_accepted_and_the_worker_reads_what_the_gateway_checked(
    client: TestClient, publisher: FakePublisher, name: str
) -> None:
    body, headers = fixture(name)
    response = post(client, body, headers)
    assert response.status_code == 202, response.text
    [(_, key, value)] = publisher.records
    envelope = RawEnvelope.model_validate_json(value)
    assert envelope.headers["content-type"] == headers["content-type"]
    assert {k: v for k, v in envelope.headers.items() if k.startswith("ce-")} == {
        k: v for k, v in headers.items() if k.startswith("ce-")
    }
    events = sources.parse_envelope(envelope)
    assert events and key.decode() == (getattr(events[0], "aggregate_id", None) or events[0].change_id)  # type: ignore[union-attr]
    assert all(e.integration == "pipeline" and e.labels["team"] == "sre" for e in events)


def test_the_same_event_in_each_mode_is_the_same_event(client: TestClient, publisher: FakePublisher) -> None:
    data, headers = fixture("incident-detected-binary")
    structured = {"specversion": "1.0", "id": headers["ce-id"], "source": headers["ce-source"],
                  "type": headers["ce-type"], "data": data}  # fmt: skip
    assert post(client, data, headers).status_code == 202
    assert post(client, structured, {"content-type": "application/cloudevents+json"}).status_code == 202
    assert post(client, [structured], {"content-type": "application/cloudevents-batch+json"}).status_code == 202
    ids = [
        [(e.event_id, e.model_dump(exclude={"received_at", "request_id"})) for e in sources.parse_envelope(envelope)]
        for envelope in (RawEnvelope.model_validate_json(value) for _, _, value in publisher.records)
    ]
    assert ids[0] == ids[1] == ids[2]


def test_bearer_token(client: TestClient) -> None:
    body, headers = fixture("incident-resolved-binary")
    assert post(client, body, {**headers, "authorization": f"Bearer {CE}"}, "/v1/cloudevents").status_code == 202


def test_a_batch_with_one_bad_event_is_refused_whole(client: TestClient, publisher: FakePublisher) -> None:
    batch, headers = fixture("batch-detected-resolved")
    del batch[1]["data"]["subject"]["content"]["environment"]
    batch[1]["data"]["context"]["id"] = "another"
    batch.append({"specversion": "1.0", "id": "x", "source": "/s", "type": "dev.cdevents.pipelinerun.started.0.2.0",
                  "data": {}})  # fmt: skip
    response = post(client, batch, headers)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"[1].data.subject.content", "[1].data.context.id", "[2].type"}
    assert publisher.records == []


def test_binary_mode_needs_the_context_headers(client: TestClient, publisher: FakePublisher) -> None:
    body, headers = fixture("incident-detected-binary")
    response = post(client, body, {"content-type": "application/json", "ce-type": headers["ce-type"]})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"ce-specversion", "ce-id", "ce-source"}
    assert publisher.records == []


def test_a_cdevent_against_its_schema(client: TestClient) -> None:
    body, headers = fixture("service-deployed-structured")
    del body["data"]["subject"]["content"]["artifactId"]
    body["data"]["context"]["timestamp"] = "yesterday"
    response = post(client, body, headers)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"data.subject.content", "data.context.timestamp"}


def test_too_many_labels_is_422_naming_the_field(client: TestClient, publisher: FakePublisher) -> None:
    def alarm(tags: int) -> dict[str, Any]:
        return {"external_aggregate_key": "k", "action": "alarmed",
                "tags": [{"name": f"t{i}", "value": "v"} for i in range(tags)]}  # fmt: skip

    response = client.post(f"/v1/ingest/elven/{ELVEN}", json=alarm(10_000))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "tags" and "at most 50" in error["message"]
    assert client.post(f"/v1/ingest/elven/{ELVEN}", json=alarm(50)).status_code == 422  # with `service`: 51
    assert client.post(f"/v1/ingest/elven/{ELVEN}", json=alarm(49)).status_code == 202
    change = {"title": "t", "change_key": "c", "change_status": "Done", "labels": {f"k{i}": "v" for i in range(51)}}
    response = client.post(f"/v1/ingest/flashduty/change/{FLASHDUTY}", json=change)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "labels"
    long = {**change, "labels": {"k" * 129: "v", "ok": "v" * 2049}}
    response = client.post(f"/v1/ingest/flashduty/change/{FLASHDUTY}", json=long)
    assert response.status_code == 422 and len(response.json()["errors"]) == 2
    assert len(publisher.records) == 1
    assert RawEnvelope.model_validate_json(publisher.records[0][2]).max_labels == 50


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_incidentflow_send_makes_requests_the_route_takes(
    client: TestClient, publisher: FakePublisher, mode: Literal["binary", "structured", "batch"]
) -> None:
    data, _ = fixture("incident-detected-binary")
    body, headers = cloudevent_request(json.dumps(data).encode(), mode)
    assert client.post(f"/v1/cloudevents/{CE}", content=body, headers=headers).status_code == 202
    [event] = sources.parse_envelope(RawEnvelope.model_validate_json(publisher.records[0][2]))
    assert event.aggregate_id == "pipeline:incident/4711"  # type: ignore[union-attr]
