"""Gateway behaviour with a fake publisher: status codes, what reaches Kafka, and what never does."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from incidentflow.config import Settings, parse_integrations
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.gateway.app import create_app
from incidentflow.gateway.guards import sign
from incidentflow.gateway.publisher import PublishError

TOKEN = "elven-token-abcdefghijklmnop"
NATIVE = "native-token-abcdefghijklmnop"
SIGNED = "signed-token-abcdefghijklmnop"
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
INTEGRATIONS = f"""
integrations:
  - {{name: shop-elven, source: elven, token: {TOKEN}, labels: {{service: shop}}, rate_limit_per_minute: 5}}
  - {{name: shop-native, source: native, token: {NATIVE}, allow_cidrs: ["10.0.0.0/8"]}}
  - {{name: shop-signed, source: elven, token: {SIGNED}, hmac_secret: "{SECRET}"}}
  - {{name: old, source: elven, token: revoked-token-abcdefghij, revoked: true}}
"""
ALARM = {"external_aggregate_key": "k1", "action": "alarmed", "title": "down", "severity": "high"}


class FakePublisher:
    """Records what would have been published; can be told to fail like an unreachable Kafka."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.failing = False

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.failing:
            raise PublishError("Kafka did not acknowledge in time")
        self.records.append((topic, key, value))

    async def ready(self) -> bool:
        return not self.failing

    async def close(self) -> None:
        pass


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@contextmanager
def gateway_client(integrations: str, publisher: FakePublisher, **settings: Any) -> Iterator[TestClient]:
    """A client of the gateway app over `publisher`, from 127.0.0.1, without the Kafka admin of its start."""
    app = create_app(Settings(_env_file=None, **settings), parse_integrations(integrations), publisher)  # type: ignore[call-arg]
    app.router.lifespan_context = _no_lifespan  # no Kafka admin in unit tests
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.fixture
def client(publisher: FakePublisher) -> Iterator[TestClient]:
    with gateway_client(INTEGRATIONS, publisher, max_body_bytes=2048) as c:
        yield c


@asynccontextmanager
async def _no_lifespan(_: object) -> AsyncIterator[None]:
    yield


def test_accepted_only_with_the_record_published(client: TestClient, publisher: FakePublisher) -> None:
    response = client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    [(topic, key, value)] = publisher.records
    envelope = RawEnvelope.model_validate_json(value)
    assert (topic, key) == ("incidentflow.raw", b"shop-elven:k1")
    assert envelope.request_id == body["request_id"]
    assert json.loads(envelope.body) == ALARM
    assert envelope.labels == {"service": "shop"}


def test_body_is_kept_byte_for_byte(client: TestClient, publisher: FakePublisher) -> None:
    raw = b'{ "action" : "alarmed",\n "external_aggregate_key":"k\\u00e9", "title": "caf\xc3\xa9" }'
    assert client.post(f"/v1/ingest/elven/{TOKEN}", content=raw).status_code == 202
    assert RawEnvelope.model_validate_json(publisher.records[0][2]).body.encode() == raw


def test_bearer_token(client: TestClient) -> None:
    response = client.post("/v1/ingest/elven", json=ALARM, headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/ingest/elven/nope-nope-nope-nope", {}),
        ("/v1/ingest/elven/revoked-token-abcdefghij", {}),
        (f"/v1/ingest/elven/{NATIVE}", {}),  # a token of another source
        ("/v1/ingest/elven", {}),
        ("/v1/ingest/elven", {"authorization": "Basic abc"}),
    ],
)
def test_unknown_revoked_or_missing_token_is_401_with_one_body(
    client: TestClient, publisher: FakePublisher, path: str, headers: dict[str, str]
) -> None:
    response = client.post(path, json=ALARM, headers=headers)
    assert response.status_code == 401
    assert {k: v for k, v in response.json().items() if k != "request_id"} == {
        "error": "unauthorized",
        "detail": "unknown, revoked or missing token",
    }
    assert publisher.records == []


def test_malformed_json_is_400(client: TestClient, publisher: FakePublisher) -> None:
    response = client.post(f"/v1/ingest/elven/{TOKEN}", content=b'{"action": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert publisher.records == []


def test_every_bad_field_is_named_in_the_422(client: TestClient, publisher: FakePublisher) -> None:
    response = client.post(f"/v1/ingest/elven/{TOKEN}", json={"action": "exploded", "severity": "urgent"})
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"external_aggregate_key", "action", "severity"}
    assert publisher.records == []


@pytest.mark.parametrize("body", [b"[]", b"42", b'"text"', b"null"])
def test_json_that_is_not_an_object_is_422(client: TestClient, body: bytes) -> None:
    assert client.post(f"/v1/ingest/elven/{TOKEN}", content=body).status_code == 422


def test_body_over_the_limit_is_413(client: TestClient, publisher: FakePublisher) -> None:
    big = {**ALARM, "description": "x" * 4096}
    assert client.post(f"/v1/ingest/elven/{TOKEN}", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds while streaming
        yield b'{"description": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}'

    assert client.post(f"/v1/ingest/elven/{TOKEN}", content=chunks()).status_code == 413
    assert publisher.records == []


def test_kafka_unreachable_is_503_with_retry_after(client: TestClient, publisher: FakePublisher) -> None:
    publisher.failing = True
    response = client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert client.get("/readyz").status_code == 503


def test_rate_limit_is_per_integration(client: TestClient) -> None:
    statuses = [client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM).status_code for _ in range(7)]
    assert statuses[:5] == [202] * 5 and statuses[5:] == [429, 429]
    limited = client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM)
    assert int(limited.headers["retry-after"]) >= 1
    signed_ok = _signed_post(client, json.dumps(ALARM).encode())
    assert signed_ok.status_code == 202  # another integration is not slowed


def test_disallowed_address_is_403(client: TestClient) -> None:
    native = {"external_aggregate_key": "x", "action": "open", "occurred_at": "2026-11-01T12:00:00Z"}
    assert client.post(f"/v1/events/{NATIVE}", json=native).status_code == 403


def _signed_post(client: TestClient, body: bytes, *, skew: int = 0, secret: str = SECRET) -> httpx.Response:
    stamp = int(time.time()) + skew
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "msg_1", stamp, body),
        "content-type": "application/json",
    }
    return client.post(f"/v1/ingest/elven/{SIGNED}", content=body, headers=headers)


def test_signatures(client: TestClient) -> None:
    body = json.dumps(ALARM).encode()
    assert _signed_post(client, body).status_code == 202
    assert _signed_post(client, body, skew=-301).status_code == 401
    assert _signed_post(client, body, skew=301).status_code == 401
    assert _signed_post(client, body, secret="whsec_b3RoZXI=").status_code == 401
    assert client.post(f"/v1/ingest/elven/{SIGNED}", content=body).status_code == 401


def test_metrics_count_requests_by_status(client: TestClient) -> None:
    client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM)
    client.post("/v1/ingest/elven/wrong-token-xxxxxxxx", json=ALARM)
    text = client.get("/metrics").text
    assert 'incidentflow_ingest_requests_total{integration="shop-elven",source="elven",status="202"} 1.0' in text
    assert 'incidentflow_ingest_requests_total{integration="unknown",source="elven",status="401"} 1.0' in text
    assert "incidentflow_ingest_request_duration_seconds_bucket" in text


def test_tokens_never_reach_the_log(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post(f"/v1/ingest/elven/{TOKEN}", json=ALARM)
    client.post("/v1/ingest/elven/wrong-token-xxxxxxxx", json=ALARM)
    server = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]  # httpx is the test's client
    assert server
    assert not [line for line in server if TOKEN in line or "wrong-token-xxxxxxxx" in line]


def test_openapi_describes_every_ingest_route(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "/v1/ingest/elven/{token}" in doc["paths"] and "/v1/events/{token}" in doc["paths"]
    body = doc["paths"]["/v1/ingest/elven/{token}"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ElvenPayload"}


def test_the_publishers_partitioner_is_kafkas_default() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from incidentflow.gateway.publisher import partitioner

    for n in range(500):
        key = f"shop-elven:incident-{n}".encode()
        for partitions in (1, 3, 8, 12):
            every = list(range(partitions))
            assert partitioner(key, every, every) == DefaultPartitioner()(key, every, every)
