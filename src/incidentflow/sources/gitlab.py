"""GitLab webhooks: `Deployment Hook` is a change, `Push Hook` a link of the chain of pushes that gives a
deployment its lead time; the `X-Gitlab-Event` header (else the body's `object_kind`) names the event,
every other one is ignored. GitLab sends the webhook's secret token as `X-Gitlab-Token`: it is the
integration's token.

A deployment is one change, named by its `deployment_id`; each status is an event of it at
`status_changed_at`: `running` is `processing` (the change time), `success` is `done`, `failed`,
`canceled` and `skipped` are `canceled` (it did not deploy: counted neither as a deployment nor as a
failure), `created` and `blocked` are `ready`. The deployed commit (the last part of `commit_url`) is
the change's version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from incidentflow.domain.events import ChangeStatus
from incidentflow.sources.base import (
    YEARS,
    AwareTimestamp,
    Context,
    Event,
    Payload,
    change_event,
    identify,
    push_event,
    read_types_schema,
    validate,
)

SOURCE = "gitlab"
EVENT_HEADER = "x-gitlab-event"
TOKEN_HEADER = "x-gitlab-token"  # noqa: S105  # a header name
EVENTS = {"Deployment Hook": "deployment", "Push Hook": "push"}
"""`X-Gitlab-Event` -> `object_kind` of the events read; every other one is answered 204."""
STATES: dict[str, ChangeStatus] = {
    "created": "ready",
    "blocked": "ready",
    "running": "processing",
    "success": "done",
    "failed": "canceled",
    "canceled": "canceled",
    "skipped": "canceled",
}


def _gitlab_time(value: Any) -> Any:
    """GitLab's `2021-04-28 21:50:00 +0200` (its deployment hook's format), or ISO 8601."""
    if isinstance(value, str):
        try:
            parsed = datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date-time like 2021-04-28 21:50:00 +0200, or ISO 8601") from None
        if parsed.tzinfo is None:
            raise ValueError("must carry its zone offset")
        if not YEARS[0] <= parsed.year <= YEARS[1]:
            raise ValueError(f"must be a date-time in the years {YEARS[0]} to {YEARS[1]}")
        return parsed.astimezone(UTC)
    raise ValueError("must be a date-time string")


GitLabTimestamp = Annotated[
    datetime,
    BeforeValidator(_gitlab_time),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2})-",
            "description": "2021-04-28 21:50:00 +0200, or ISO 8601 with a zone",
        }
    ),  # fmt: skip
]


class Project(Payload):
    name: str = Field(min_length=1, max_length=255)
    path_with_namespace: str = Field(min_length=1, max_length=512)
    web_url: str | None = None


class DeploymentHook(Payload):
    """`X-Gitlab-Event: Deployment Hook`."""

    status: str = Field(min_length=1, max_length=64)
    status_changed_at: GitLabTimestamp
    deployment_id: int
    environment: str = Field(min_length=1, max_length=2048)
    project: Project
    commit_url: str = Field(pattern=r"/commit/[0-9A-Za-z]+/?$", max_length=4096)
    commit_title: str | None = None
    deployable_url: str | None = None
    ref: str | None = None

    @property
    def sha(self) -> str:
        return self.commit_url.rstrip("/").rsplit("/", 1)[1]


class PushCommit(Payload):
    id: str = Field(min_length=1, max_length=512)
    timestamp: AwareTimestamp


class PushHook(Payload):
    """`X-Gitlab-Event: Push Hook` (GitLab lists at most 20 commits of a push; the earliest of those counts)."""

    ref: str = Field(min_length=1, max_length=2048)
    before: str = Field(min_length=1, max_length=512)
    after: str = Field(min_length=1, max_length=512)
    commits: list[PushCommit] = Field(default_factory=list)
    project: Project


class Kind(Payload):
    object_kind: str | None = None


BODY_SCHEMA = read_types_schema(
    "GitLabWebhook",
    "A GitLab webhook delivery; `X-Gitlab-Event` (else `object_kind`) says which. `Deployment Hook` and "
    "`Push Hook` are read (their fields below); any other event type is answered "
    "204 and not stored.",
    DeploymentHook,
    PushHook,
)
"""The documented body (the gateway's OpenAPI document)."""


def parse(payload: Any, ctx: Context) -> list[Event]:
    header = ctx.headers.get(EVENT_HEADER)
    named = validate(Kind, payload).object_kind  # the body is an object whatever the event
    kind = named if header is None else EVENTS.get(header)
    if kind == "deployment":
        return deployment(validate(DeploymentHook, payload), ctx)
    if kind == "push":
        return push(validate(PushHook, payload), ctx)
    return []


def deployment(body: DeploymentHook, ctx: Context) -> list[Event]:
    status = STATES.get(body.status)
    if status is None:
        return []
    project = body.project
    labels = {"env": body.environment, "repository": project.path_with_namespace,
              "service": ctx.labels.get("service") or project.name}  # fmt: skip
    if body.ref:
        labels["ref"] = body.ref
    return [
        change_event(
            ctx,
            event_id=identify(ctx, SOURCE, ctx.integration, body.deployment_id, body.status, body.status_changed_at),
            change=f"{ctx.integration}:{body.deployment_id}",
            source=SOURCE,
            status=status,
            occurred_at=body.status_changed_at,
            title=body.commit_title or f"{project.path_with_namespace} {body.sha[:12]} to {body.environment}",
            url=body.deployable_url or None,
            labels=labels,
            labels_field="project",
            version=body.sha,
        )
    ]


def push(body: PushHook, ctx: Context) -> list[Event]:
    repository = body.project.path_with_namespace
    if body.after.strip("0") == "":
        return []  # a deleted ref brings no commit
    return [
        push_event(
            ctx,
            event_id=identify(ctx, SOURCE, ctx.integration, repository, body.ref, body.before, body.after),
            source=SOURCE,
            repository=repository,
            ref=body.ref,
            before=body.before,
            after=body.after,
            commits=[(c.id, c.timestamp) for c in body.commits],
        )
    ]
