"""Lead time from pushes, live on real Kafka: a GitHub deployment posted before the pushes it ships has no
commit time, then gets the right one as they arrive (the metric row corrected); a GitLab push and
deployment through `X-Gitlab-Token`."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidentflow.sources.github import sign
from tests.integration.conftest import Stack, read_topic

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GH, GL, SECRET = "lead-github-token-0123456789", "lead-gitlab-token-0123456789", "lead-github-secret"
INTEGRATIONS = f"""
integrations:
  - {{name: gh, source: github, token: {GH}, hmac_secret: {SECRET}}}
  - {{name: gl, source: gitlab, token: {GL}}}
"""
NOW = datetime.now(UTC).replace(microsecond=0)
T = NOW - timedelta(hours=1)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def fixture(source: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / source / f"{name}.json").read_text())
    return body


def github(stack: Stack, event: str, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": sign(SECRET, raw), "Content-Type": "application/json"}
    response = httpx.post(f"{stack.gateway_url}/v1/ingest/github/{GH}", content=raw, headers=headers, timeout=30)
    assert response.status_code == 202, response.text


def gh_push(before: str, after: str, *commits: datetime) -> dict[str, Any]:
    body = copy.deepcopy(fixture("github", "push-master"))
    body.update(before=before, after=after, created=before == "0" * 40)
    body["commits"] = [
        {**body["commits"][0], "id": f"{after}-{i}", "timestamp": iso(at)} for i, at in enumerate(commits)
    ]
    return body


def gh_deployment(deployment_id: int, sha: str, state: str, at: datetime) -> dict[str, Any]:
    body = copy.deepcopy(fixture("github", "deployment-status-success"))
    body["deployment"].update(id=deployment_id, sha=sha, environment="production")
    body["deployment_status"].update(id=deployment_id * 10 + len(state), state=state, created_at=iso(at))
    return body


def change_rows(stack: Stack, until: Any) -> dict[str, dict[str, Any]]:
    records = read_topic(stack.bootstrap, f"{stack.namespace}.metrics", lambda r: until(_latest(r)), timeout=90)
    return _latest(records)


def _latest(records: list[Any]) -> dict[str, dict[str, Any]]:
    rows = {r.key.decode(): json.loads(r.value) for r in records}
    return {k: v for k, v in rows.items() if k.startswith("changes|")}


def test_a_deployment_posted_before_its_pushes_gets_its_lead_time_when_they_arrive(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker()
    day_one, day_two = (T - timedelta(days=4)).date().isoformat(), T.date().isoformat()
    first = f"changes|Hello-World|production|-|{day_one}"
    second = f"changes|Hello-World|production|-|{day_two}"

    # the first deployment, of sha a, after the push that created main: lead time one day
    github(stack, "push", gh_push("0" * 40, "a", T - timedelta(days=5)))
    github(stack, "deployment_status", gh_deployment(1, "a", "in_progress", T - timedelta(days=4)))
    github(stack, "deployment_status", gh_deployment(1, "a", "success", T - timedelta(days=4) + timedelta(minutes=3)))
    # the second, of sha c, posted before the pushes a -> b -> c it ships
    github(stack, "deployment_status", gh_deployment(2, "c", "success", T))
    rows = change_rows(stack, lambda r: r.get(first, {}).get("lead_times") == 1 and second in r)
    assert rows[first]["sum_seconds"] == 86400.0
    assert (rows[second]["changes"], rows[second]["lead_times"]) == (1, 0)

    github(stack, "push", gh_push("b", "c", T - timedelta(hours=1)))  # the chain is still broken at b
    github(stack, "push", gh_push("a", "b", T - timedelta(hours=3), T - timedelta(hours=2)))
    rows = change_rows(stack, lambda r: r.get(second, {}).get("lead_times") == 1)
    assert rows[second]["sum_seconds"] == 3 * 3600.0

    # a late push that extends the chain (b reached from another branch with an older commit): corrected
    github(stack, "push", gh_push("a", "b", T - timedelta(hours=9)))
    rows = change_rows(stack, lambda r: r.get(second, {}).get("sum_seconds") == 9 * 3600.0)
    assert rows[second]["lead_times"] == 1


def test_gitlab_push_and_deployment_with_the_token_header(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker()
    push = fixture("gitlab", "push-hook")
    push["before"] = "0" * 40
    for i, commit in enumerate(push["commits"]):
        commit["timestamp"] = iso(T - timedelta(hours=2 - i))
    deployment = fixture("gitlab", "deployment-hook-success")
    deployment["commit_url"] = f"http://example.com/mike/diaspora/-/commit/{push['after']}"
    deployment["project"] = push["project"]
    deployment["status_changed_at"] = T.strftime("%Y-%m-%d %H:%M:%S +0000")
    for event, body in (("Deployment Hook", deployment), ("Push Hook", push)):
        headers = {"X-Gitlab-Token": GL, "X-Gitlab-Event": event}
        response = httpx.post(f"{stack.gateway_url}/v1/ingest/gitlab", json=body, headers=headers, timeout=30)
        assert response.status_code == 202, response.text
    key = f"changes|Diaspora|staging|-|{T.date().isoformat()}"
    rows = change_rows(stack, lambda r: r.get(key, {}).get("lead_times") == 1)
    assert rows[key]["sum_seconds"] == 2 * 3600.0
