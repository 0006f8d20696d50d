"""The Alertmanager and PagerDuty routes (fake publisher): tokens, signatures, whole-or-nothing
notifications, ignored event types, label limits and Alertmanager's truncated alerts."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidentflow import cli
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.gateway.app import ROUTES
from incidentflow.sources.pagerduty import sign
from tests.unit.gateway.test_app import FakePublisher, gateway_client

AM = "alertmanager-token-abcdefghijklmnop"
PD = "pagerduty-token-abcdefghijklmnop"
PD_OPEN = "pagerduty-open-token-abcdefghijkl"
SECRET, OLD_SECRET = "pd-webhook-secret-1", "pd-webhook-secret-0"
INTEGRATIONS = f"""
integrations:
  - {{name: am, source: alertmanager, token: {AM}, labels: {{env: prod}}, default_severity: high}}
  - {{name: pd, source: pagerduty, token: {PD}, hmac_secret: {SECRET}}}
  - {{name: pd-open, source: pagerduty, token: {PD_OPEN}}}
"""
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UNAUTHORIZED = {"error": "unauthorized", "detail": "unknown, revoked or missing token"}


def fixture(source: str, name: str) -> Any:
    return json.loads((FIXTURES / source / f"{name}.json").read_text())


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> Iterator[TestClient]:
    with gateway_client(INTEGRATIONS, publisher, max_labels=8) as c:
        yield c


def _error_fields(response: Any) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


def test_alertmanager_with_bearer_token_publishes_the_notification_once(
    client: TestClient, publisher: FakePublisher
) -> None:
    body = fixture("alertmanager", "group-firing-and-resolved-truncated")
    response = client.post("/v1/ingest/alertmanager", json=body, headers={"Authorization": f"Bearer {AM}"})
    assert response.status_code == 202, response.text
    [(_, key, value)] = publisher.records
    envelope = RawEnvelope.model_validate_json(value)
    assert envelope.source == "alertmanager" and envelope.integration == "am"
    assert json.loads(envelope.body) == body
    assert key == b"am:5c1d2a3b4e5f6071"
    metrics = client.get("/metrics").text
    assert 'incidentflow_alertmanager_truncated_alerts_total{integration="am"} 1.0' in metrics


def test_alertmanager_with_one_bad_alert_is_refused_whole(client: TestClient, publisher: FakePublisher) -> None:
    body = fixture("alertmanager", "group-firing-and-resolved-truncated")
    body["alerts"][1]["endsAt"] = "yesterday"
    body["alerts"][0]["fingerprint"] = ""
    response = client.post(f"/v1/ingest/alertmanager/{AM}", json=body)
    assert response.status_code == 422
    assert sorted(_error_fields(response)) == ["alerts.0.fingerprint", "alerts.1.endsAt"]
    assert publisher.records == []


def test_alertmanager_resolved_alert_without_end_names_the_field(client: TestClient) -> None:
    body = fixture("alertmanager", "resolved")
    del body["alerts"][0]["endsAt"]
    response = client.post(f"/v1/ingest/alertmanager/{AM}", json=body)
    assert response.status_code == 422 and _error_fields(response) == ["alerts.0.endsAt"]


def test_alertmanager_labels_over_the_limit_are_422_naming_the_alert(client: TestClient) -> None:
    body = fixture("alertmanager", "firing")
    body["alerts"][0]["labels"].update({f"extra{i}": "x" for i in range(3)})  # 8 + the static env: 9 > 8
    response = client.post(f"/v1/ingest/alertmanager/{AM}", json=body)
    assert response.status_code == 422 and _error_fields(response) == ["alerts.0.labels"]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"alerts": []}'])
def test_alertmanager_malformed_bodies(client: TestClient, body: bytes) -> None:
    response = client.post(f"/v1/ingest/alertmanager/{AM}", content=body)
    assert response.status_code in (400, 422)
    assert response.json()["error"] in ("malformed", "invalid")


def test_a_pagerduty_token_is_not_an_alertmanager_token(client: TestClient, publisher: FakePublisher) -> None:
    response = client.post(f"/v1/ingest/alertmanager/{PD_OPEN}", json=fixture("alertmanager", "firing"))
    assert response.status_code == 401 and {k: response.json()[k] for k in UNAUTHORIZED} == UNAUTHORIZED
    assert publisher.records == []


def _signed(body: Any, *secrets: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-PagerDuty-Signature": ",".join(sign(s, raw) for s in secrets), "Content-Type": "application/json"}


def test_pagerduty_signed_event_is_accepted(client: TestClient, publisher: FakePublisher) -> None:
    raw, headers = _signed(fixture("pagerduty", "triggered"), SECRET)
    response = client.post(f"/v1/ingest/pagerduty/{PD}", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    [(_, key, _value)] = publisher.records
    assert key == b"pd:PGR0VU2"


def test_pagerduty_signature_during_a_secret_rotation(client: TestClient, publisher: FakePublisher) -> None:
    raw, headers = _signed(fixture("pagerduty", "resolved"), OLD_SECRET, SECRET)
    assert client.post(f"/v1/ingest/pagerduty/{PD}", content=raw, headers=headers).status_code == 202


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "body changed", "not v1"])
def test_pagerduty_bad_signatures_are_401_like_a_bad_token(
    client: TestClient, publisher: FakePublisher, case: str
) -> None:
    raw, headers = _signed(fixture("pagerduty", "triggered"), OLD_SECRET if case == "wrong secret" else SECRET)
    if case == "unsigned":
        del headers["X-PagerDuty-Signature"]
    elif case == "body changed":
        raw = raw.replace(b"A little bump", b"A large bump")
    elif case == "not v1":
        headers["X-PagerDuty-Signature"] = headers["X-PagerDuty-Signature"].replace("v1=", "v0=")
    response = client.post(f"/v1/ingest/pagerduty/{PD}", content=raw, headers=headers)
    assert response.status_code == 401
    assert {k: response.json()[k] for k in UNAUTHORIZED} == UNAUTHORIZED
    assert publisher.records == []


@pytest.mark.parametrize("name", ["priority-updated-ignored", "service-updated-ignored"])
def test_pagerduty_other_event_types_are_204_and_store_nothing(
    client: TestClient, publisher: FakePublisher, name: str
) -> None:
    response = client.post(f"/v1/ingest/pagerduty/{PD_OPEN}", json=fixture("pagerduty", name))
    assert response.status_code == 204 and response.content == b""
    assert response.headers["x-request-id"]
    assert publisher.records == []


def test_pagerduty_incident_event_without_its_incident_is_422(client: TestClient, publisher: FakePublisher) -> None:
    body = copy.deepcopy(fixture("pagerduty", "triggered"))
    del body["event"]["data"]["id"]
    del body["event"]["occurred_at"]
    response = client.post(f"/v1/ingest/pagerduty/{PD_OPEN}", json=body)
    assert response.status_code == 422
    assert sorted(_error_fields(response)) == ["event.data.id", "event.occurred_at"]
    assert publisher.records == []


def test_token_create_knows_every_route() -> None:
    assert {route.source: route.path for route in ROUTES} == cli.ROUTE_OF_SOURCE
