"""The GitHub and GitLab routes (fake publisher): event headers, signatures, GitLab's token header,
ignored event types, and what reaches the raw topic."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from incidentflow.domain.envelope import RawEnvelope
from incidentflow.sources.github import sign
from tests.unit.gateway.test_app import FakePublisher, gateway_client
from tests.unit.gateway.test_incident_sources import UNAUTHORIZED, fixture

GH = "github-token-abcdefghijklmnopqr"
GH_OPEN = "github-open-token-abcdefghijklm"
GL = "gitlab-token-abcdefghijklmnopqrs"
SECRET = "gh-webhook-secret"
INTEGRATIONS = f"""
integrations:
  - {{name: gh, source: github, token: {GH}, hmac_secret: {SECRET}}}
  - {{name: gh-open, source: github, token: {GH_OPEN}, labels: {{service: web}}}}
  - {{name: gl, source: gitlab, token: {GL}}}
"""


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> Iterator[TestClient]:
    with gateway_client(INTEGRATIONS, publisher) as c:
        yield c


def github(
    client: TestClient, event: str, body: object, token: str = GH, secret: str | None = SECRET
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, raw)
    return client.post(f"/v1/ingest/github/{token}", content=raw, headers=headers)


def test_github_signed_deployment_status_and_push_are_stored_with_their_event_header(
    client: TestClient, publisher: FakePublisher
) -> None:
    assert github(client, "deployment_status", fixture("github", "deployment-status-success")).status_code == 202
    assert github(client, "push", fixture("github", "push-master")).status_code == 202
    (_, deploy_key, deploy), (_, push_key, pushed) = publisher.records
    assert deploy_key == b"gh:145988746" and push_key == b"Codertocat/Hello-World"
    envelope = RawEnvelope.model_validate_json(deploy)
    assert envelope.headers == {"x-github-event": "deployment_status", "x-github-delivery": "d-1"}
    assert RawEnvelope.model_validate_json(pushed).headers["x-github-event"] == "push"


def test_github_bad_or_missing_signature_is_401_and_stores_nothing(
    client: TestClient, publisher: FakePublisher
) -> None:
    body = fixture("github", "push-master")
    bad = github(client, "push", body, secret="another-secret")
    missing = github(client, "push", body, secret=None)
    assert bad.status_code == missing.status_code == 401
    assert bad.json()["error"] == UNAUTHORIZED["error"]
    assert publisher.records == []


def test_github_ping_and_other_events_are_204_and_store_nothing(client: TestClient, publisher: FakePublisher) -> None:
    ping = github(client, "ping", fixture("github", "ping-ignored"))
    other = github(client, "issues", {"action": "opened"})
    inactive = copy.deepcopy(fixture("github", "deployment-status-success"))
    inactive["deployment_status"]["state"] = "inactive"
    assert [r.status_code for r in (ping, other, github(client, "deployment_status", inactive))] == [204, 204, 204]
    assert ping.headers["X-Request-Id"]
    assert publisher.records == []


def test_github_without_event_header_or_with_a_bad_body_is_422(client: TestClient, publisher: FakePublisher) -> None:
    no_header = client.post(f"/v1/ingest/github/{GH_OPEN}", json=fixture("github", "push-master"))
    assert no_header.status_code == 422
    assert [e["field"] for e in no_header.json()["errors"]] == ["X-GitHub-Event"]
    body = copy.deepcopy(fixture("github", "deployment-status-success"))
    del body["deployment"]["sha"]
    body["deployment_status"]["created_at"] = "soon"
    bad = github(client, "deployment_status", body, token=GH_OPEN, secret=None)
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == ["deployment.sha", "deployment_status.created_at"]
    malformed = client.post(f"/v1/ingest/github/{GH_OPEN}", content=b"{", headers={"X-GitHub-Event": "push"})
    assert malformed.status_code == 400
    assert publisher.records == []


def test_gitlab_token_header_is_the_token(client: TestClient, publisher: FakePublisher) -> None:
    body = fixture("gitlab", "deployment-hook-success")
    ok = client.post(
        "/v1/ingest/gitlab", json=body, headers={"X-Gitlab-Token": GL, "X-Gitlab-Event": "Deployment Hook"}
    )
    wrong = client.post(
        "/v1/ingest/gitlab", json=body, headers={"X-Gitlab-Token": GH, "X-Gitlab-Event": "Deployment Hook"}
    )
    none = client.post("/v1/ingest/gitlab", json=body, headers={"X-Gitlab-Event": "Deployment Hook"})
    assert (ok.status_code, wrong.status_code, none.status_code) == (202, 401, 401)
    [(_, key, value)] = publisher.records
    assert key == b"gl:15"
    assert RawEnvelope.model_validate_json(value).headers == {"x-gitlab-event": "Deployment Hook"}


def test_gitlab_push_is_stored_and_other_hooks_are_204(client: TestClient, publisher: FakePublisher) -> None:
    headers = {"X-Gitlab-Token": GL}
    push = client.post(
        "/v1/ingest/gitlab", json=fixture("gitlab", "push-hook"), headers={**headers, "X-Gitlab-Event": "Push Hook"}
    )
    job = client.post(
        "/v1/ingest/gitlab", json={"object_kind": "build"}, headers={**headers, "X-Gitlab-Event": "Job Hook"}
    )
    assert (push.status_code, job.status_code) == (202, 204)
    [(_, key, _)] = publisher.records
    assert key == b"mike/diaspora"
