"""GitHub webhooks: `deployment_status` is a change, `push` a link of the chain of pushes that gives a
deployment its lead time; the `X-GitHub-Event` header names the event, every other one is ignored.

A deployment is one change, named by the deployment's id; each of its statuses is an event of it:
`queued` and `in_progress` are `processing` (the change time is the first of them), `success` is
`done`, `failure` and `error` are `canceled` (a deployment that did not deploy: counted neither as a
deployment nor as a failure), `pending` is `ready`; `inactive` (a newer deployment replaced it) says
nothing new and is ignored. The deployed `sha` is the change's version.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from incidentflow.domain.events import ChangeStatus
from incidentflow.sources.base import (
    AwareTimestamp,
    Context,
    Event,
    FieldError,
    Payload,
    PayloadError,
    change_event,
    identify,
    push_event,
    read_types_schema,
    validate,
)

SOURCE = "github"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
SIGNATURE_HEADER = "x-hub-signature-256"
STATES: dict[str, ChangeStatus] = {
    "pending": "ready",
    "queued": "processing",
    "in_progress": "processing",
    "success": "done",
    "failure": "canceled",
    "error": "canceled",
}
"""A deployment status's `state` -> change status; `inactive` is ignored."""
IGNORED_STATES = ("inactive",)
READ = ("deployment_status", "push")
"""The event types read; every other one (`ping` when the webhook is created, ...) is answered 204."""
Sha = str


class Repository(Payload):
    name: str = Field(min_length=1, max_length=255)
    full_name: str = Field(min_length=1, max_length=512)
    html_url: str | None = None


class DeploymentStatus(Payload):
    id: int
    state: Literal["pending", "queued", "in_progress", "success", "failure", "error", "inactive"]
    description: str | None = None
    environment: str | None = None
    target_url: str | None = None
    log_url: str | None = None
    created_at: AwareTimestamp


class Deployment(Payload):
    id: int
    sha: Sha = Field(min_length=1, max_length=512)
    ref: str | None = None
    environment: str = Field(min_length=1, max_length=2048)
    description: str | None = None
    payload: dict[str, Any] | str | None = Field(
        default=None, description="The deployment's payload; a string `service` in it names the service."
    )


class DeploymentStatusEvent(Payload):
    """`X-GitHub-Event: deployment_status`."""

    deployment_status: DeploymentStatus
    deployment: Deployment
    repository: Repository


class PushCommit(Payload):
    id: Sha = Field(min_length=1, max_length=512)
    timestamp: AwareTimestamp


class PushEvent(Payload):
    """`X-GitHub-Event: push` (GitHub lists at most 20 commits of a push; the earliest of those counts)."""

    ref: str = Field(min_length=1, max_length=2048)
    before: Sha = Field(min_length=1, max_length=512)
    after: Sha = Field(min_length=1, max_length=512)
    deleted: bool = False
    commits: list[PushCommit] = Field(default_factory=list)
    repository: Repository


BODY_SCHEMA = read_types_schema(
    "GitHubWebhook",
    "A GitHub webhook delivery; `X-GitHub-Event` says which. `deployment_status` and `push` "
    "are read (their fields below); any other event type (`ping` when the webhook is created) is answered "
    "204 and not stored.",
    DeploymentStatusEvent,
    PushEvent,
)
"""The documented body (the gateway's OpenAPI document)."""


def event_type(ctx: Context) -> str:
    """The event type of the delivery (`X-GitHub-Event`); a delivery without one is refused."""
    name = ctx.headers.get(EVENT_HEADER, "").strip()
    if not name:
        raise PayloadError([FieldError("X-GitHub-Event", "header required (the GitHub event type)")])
    return name


class Delivery(Payload):
    """Any delivery's body: a JSON object (the fields read depend on the event type)."""


def parse(payload: Any, ctx: Context) -> list[Event]:
    name = event_type(ctx)
    validate(Delivery, payload)
    if name == "deployment_status":
        return deployment(validate(DeploymentStatusEvent, payload), ctx)
    if name == "push":
        return push(validate(PushEvent, payload), ctx)
    return []


def deployment(body: DeploymentStatusEvent, ctx: Context) -> list[Event]:
    status, dep, repo = body.deployment_status, body.deployment, body.repository
    if status.state in IGNORED_STATES:
        return []
    named = dep.payload.get("service") if isinstance(dep.payload, dict) else None
    labels = {"env": dep.environment, "repository": repo.full_name}
    service = named if isinstance(named, str) and named else ctx.labels.get("service") or repo.name
    labels["service"] = service
    if dep.ref:
        labels["ref"] = dep.ref
    return [
        change_event(
            ctx,
            event_id=identify(ctx, SOURCE, ctx.integration, dep.id, status.id, status.state, status.created_at),
            change=f"{ctx.integration}:{dep.id}",
            source=SOURCE,
            status=STATES[status.state],
            occurred_at=status.created_at,
            title=dep.description or f"{repo.full_name} {dep.ref or dep.sha[:12]} to {dep.environment}",
            description=status.description or None,
            url=status.target_url or status.log_url or None,
            labels=labels,
            labels_field="deployment",
            version=dep.sha,
        )
    ]


def push(body: PushEvent, ctx: Context) -> list[Event]:
    if body.deleted or body.after.strip("0") == "":
        return []  # a deleted ref brings no commit
    return [
        push_event(
            ctx,
            event_id=identify(
                ctx, SOURCE, ctx.integration, body.repository.full_name, body.ref, body.before, body.after
            ),  # fmt: skip
            source=SOURCE,
            repository=body.repository.full_name,
            ref=body.ref,
            before=body.before,
            after=body.after,
            commits=[(c.id, c.timestamp) for c in body.commits],
        )
    ]


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` GitHub sends for a body (for `incidentflow send` and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> bool:
    """True when `X-Hub-Signature-256` is the body's HMAC-SHA256 under the webhook's secret."""
    return hmac.compare_digest(sign(secret, body), headers.get(SIGNATURE_HEADER, "").strip())
