"""CDEvents 0.5 carried as CloudEvents 1.0: incident events are alerts, service deployments are changes.

The CloudEvents protocol bindings (HTTP binary and structured modes, Kafka binary and structured
modes) are the `cloudevents` package's; the batch mode (`application/cloudevents-batch+json`, a
JSON array of structured events) is read element by element with the same JSON format. Each event's
data must be the CDEvent of its type, valid against the CDEvents project's published JSON Schema
(`cdevents_schemas/`), with the same `id`, `source` and `type` in its context as the CloudEvent's.

- `incident.detected` and `incident.reported` open the incident whose key is the subject's `id`;
  `incident.resolved` resolves it. The event time is the CDEvent context's `timestamp`.
- `service.deployed`, `service.upgraded` and `service.rolledback` are `done` changes at their
  `timestamp`. A service's subject `id` names the service, not one deployment, so the change key is
  that id, `#`, and 16 hex digits of the event id (of the CloudEvent's `source` and `id`): each
  deployment event is a change of its own.
- Labels: `env` from the environment's `id`, `service` from the service's `id` (the subject's for a
  service event), `artifact` from `artifactId`, over the integration's static labels.
- `change.merged` gives a deployment its lead time: a `service.deployed` (or `upgraded`) whose
  `artifactId` is a merged change's subject `id` (name the merge commit's sha, or the artifact built
  from it) ships that change, merged at its `timestamp`. The join is per integration: both events
  name the repository by the integration's static `repository` label, else the integration's name.
- The event id is a hash of the CloudEvent's `source` and `id`, which name an event: a redelivery
  is the same event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http, kafka
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from incidentflow.domain.events import AlertAction, content_id
from incidentflow.sources.base import (
    YEARS,
    Context,
    Event,
    FieldError,
    PayloadError,
    alert_event,
    change_event,
    push_event,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SOURCE = "cloudevents"

Kind = Literal["open", "resolve", "deployed", "merged"]
TYPES: dict[str, tuple[str, Kind]] = {
    "dev.cdevents.incident.detected.0.3.0": ("incidentdetected", "open"),
    "dev.cdevents.incident.reported.0.3.0": ("incidentreported", "open"),
    "dev.cdevents.incident.resolved.0.3.0": ("incidentresolved", "resolve"),
    "dev.cdevents.service.deployed.0.3.0": ("servicedeployed", "deployed"),
    "dev.cdevents.service.upgraded.0.3.0": ("serviceupgraded", "deployed"),
    "dev.cdevents.service.rolledback.0.3.0": ("servicerolledback", "deployed"),
    "dev.cdevents.change.merged.0.3.0": ("changemerged", "merged"),
}
"""The CloudEvent types read, with the schema of each and what it means for an incident or a change."""

_FORMAT = JSONFormat()

CDEVENT_SCHEMA: dict[str, Any] = {
    "title": "CDEvent",
    "type": "object",
    "required": ["context", "subject"],
    "description": "Binary mode (`ce-specversion`, `ce-id`, `ce-source`, `ce-type` headers): the body is the "
    "CDEvent, valid against its type's CDEvents 0.5.1 schema (https://cdevents.dev/0.5.1/schema/...). Types: "
    + ", ".join(TYPES),
}
CLOUDEVENT_SCHEMA: dict[str, Any] = {
    "title": "CloudEvent",
    "type": "object",
    "required": ["specversion", "id", "source", "type", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"enum": list(TYPES)},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string"},
        "data": {"$ref": "#/components/schemas/CDEvent"},
    },
    "description": "Structured mode (`application/cloudevents+json`): one CloudEvent whose `data` is the CDEvent.",
}
BATCH_SCHEMA: dict[str, Any] = {
    "title": "CloudEventBatch",
    "type": "array",
    "minItems": 1,
    "items": {"$ref": "#/components/schemas/CloudEvent"},
    "description": "Batch mode (`application/cloudevents-batch+json`): taken or refused whole.",
}


def mode(content_type: str | None) -> Literal["binary", "structured", "batch"]:
    """The HTTP content mode of a request, by its media type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == BATCH:
        return "batch"
    if media == STRUCTURED:
        return "structured"
    return "binary"


def parse(payload: Any, ctx: Context) -> list[Event]:
    """The events of one HTTP request, in any of the three modes; every bad field of every event is listed.

    A batch is taken or refused whole: one bad event refuses the request, and nothing of it is stored.
    """
    request_mode = mode(ctx.headers.get("content-type"))
    if request_mode == "batch":
        if not isinstance(payload, list) or not payload:
            raise PayloadError([FieldError("body", "a batch must be a non-empty JSON array of CloudEvents")])
        events: list[Event] = []
        errors: list[FieldError] = []
        for index, item in enumerate(payload):
            try:
                prefix = f"[{index}]."
                events.extend(_events(_structured(item, prefix), ctx, prefix))
            except PayloadError as error:
                errors.extend(error.errors)
        if errors:
            raise PayloadError(errors)
        return events
    if request_mode == "structured":
        return _events(_structured(payload, ""), ctx)
    _require({name[3:] for name in ctx.headers if name.startswith("ce-")}, "ce-")
    message = http.HTTPMessage(headers=dict(ctx.headers), body=json.dumps(payload).encode())
    return _events(_read(lambda: http.from_binary(message, _FORMAT, CloudEvent), "ce-"), ctx)


def parse_kafka(headers: Mapping[str, bytes], key: bytes | None, value: bytes, ctx: Context) -> list[Event]:
    """The events of one record of the CDEvents topic (Kafka binding, binary or structured mode)."""
    content_type = next((v.decode(errors="replace") for k, v in headers.items() if k.lower() == "content-type"), None)
    if mode(content_type) == "structured":
        try:
            decoded = json.loads(value)
        except ValueError as error:
            raise PayloadError([FieldError("value", f"not JSON: {error}")]) from None
        return _events(_structured(decoded, ""), ctx)
    _require({name.lower()[3:] for name in headers if name.lower().startswith("ce_")}, "ce_")
    message = kafka.KafkaMessage(headers=dict(headers), key=key, value=value)
    return _events(_read(lambda: kafka.from_binary(message, _FORMAT, CloudEvent), "ce_"), ctx)


def _structured(item: Any, prefix: str) -> BaseCloudEvent:
    if not isinstance(item, dict):
        raise PayloadError([FieldError(prefix.rstrip(".") or "body", "must be a CloudEvent (a JSON object)")])
    if "data_base64" in item:
        raise PayloadError([FieldError(f"{prefix}data_base64", "a CDEvent is JSON data (`data`), not base64")])
    _require(set(item), prefix)
    return _read(lambda: _FORMAT.read(CloudEvent, json.dumps(item)), prefix)


REQUIRED = ("specversion", "id", "source", "type")


def _require(present: set[str], prefix: str) -> None:
    """The required context attributes are present: the SDK would make up an `id` (a new one at every
    delivery, so redeliveries would not dedupe) and a `specversion` for an event without them."""
    missing = [FieldError(f"{prefix}{name}", "required") for name in REQUIRED if name not in present]
    if missing:
        raise PayloadError(missing)


def _read(build: Any, prefix: str) -> BaseCloudEvent:
    """A CloudEvent from the SDK's binding; its validation errors, each named by attribute."""
    try:
        event: BaseCloudEvent = build()
    except CloudEventValidationError as error:
        raise PayloadError(
            [FieldError(f"{prefix}{name}", str(found[0])) for name, found in error.errors.items() if found]
        ) from None
    except (BaseCloudEventException, ValueError, TypeError, UnicodeDecodeError) as error:
        raise PayloadError([FieldError(prefix.rstrip(".-_") or "body", f"not a CloudEvent: {error}")]) from None
    return event


def _events(event: BaseCloudEvent, ctx: Context, prefix: str = "") -> list[Event]:
    """The canonical event of one CloudEvent carrying a CDEvent; `prefix` names it in a batch."""
    ce_type, ce_id, ce_source = event.get_type(), event.get_id(), event.get_source()
    known = TYPES.get(ce_type)
    if known is None:
        raise PayloadError(
            [FieldError(f"{prefix}type", f"unsupported type {ce_type!r}; supported: {', '.join(TYPES)}")]
        )
    schema, kind = known
    data = event.get_data()
    if not isinstance(data, dict):
        raise PayloadError([FieldError(f"{prefix}data", "must be the CDEvent, a JSON object")])
    errors = [
        FieldError(prefix + ".".join(["data", *(str(p) for p in error.absolute_path)]), error.message)
        for error in sorted(_validator(schema).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    found = data.get("context")
    context: dict[str, Any] = found if isinstance(found, dict) else {}
    for name, expected in (("id", ce_id), ("source", ce_source), ("type", ce_type)):
        if name in context and context[name] != expected:
            errors.append(
                FieldError(f"{prefix}data.context.{name}", f"must equal the CloudEvent's {name} ({expected!r})")
            )
    occurred = _timestamp(context.get("timestamp"), errors, f"{prefix}data.context.timestamp")
    if errors or occurred is None:
        raise PayloadError(errors)
    subject = data["subject"]
    content = subject["content"]
    event_id = content_id(SOURCE, ctx.integration, ce_source, ce_id)  # also part of a change's key
    repository = ctx.labels.get("repository") or ctx.integration
    if kind == "merged":
        return [push_event(ctx, event_id=event_id, source=SOURCE, repository=repository, after=subject["id"],
                           before=None, commits=[(subject["id"], occurred)])]  # fmt: skip
    labels = {"env": content["environment"]["id"]}
    service = content.get("service", {}).get("id") if kind != "deployed" else subject["id"]
    if service:
        labels["service"] = service
    if content.get("artifactId"):
        labels["artifact"] = content["artifactId"]
    verb = ce_type.split(".")[3]
    if kind == "deployed":
        return [
            change_event(
                ctx,
                event_id=event_id,
                change=f"{ctx.integration}:{subject['id']}#{event_id[:16]}",
                source=SOURCE,
                status="done",
                occurred_at=occurred,
                title=f"{subject['id']} {verb} ({content['artifactId']})",
                labels={**labels, "repository": repository},
                labels_field=f"{prefix}data.subject.content",
                kind="rollback" if verb == "rolledback" else None,
                version=content.get("artifactId") or None,
            )
        ]
    action: AlertAction = kind
    description = content.get("description")
    return [
        alert_event(
            ctx,
            event_id=event_id,
            key=subject["id"],
            source=SOURCE,
            action=action,
            occurred_at=occurred,
            severity=ctx.default_severity if action == "open" else None,
            title=(description.splitlines() or [""])[0][:512] if description else f"incident {subject['id']}",
            description=description,
            url=content.get("ticketURI"),
            labels=labels,
            labels_field=f"{prefix}data.subject.content",
        )
    ]


def _timestamp(value: Any, errors: list[FieldError], field: str) -> datetime | None:
    """The CDEvent's `timestamp`: an RFC 3339 date-time with its zone."""
    if not isinstance(value, str):
        return None  # missing or not a string: the schema's error names it
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(field, "must be an RFC 3339 date-time"))
        return None
    if parsed.tzinfo is None or not YEARS[0] <= parsed.year <= YEARS[1]:
        errors.append(FieldError(field, f"must have a zone and a year in {YEARS[0]}..{YEARS[1]}"))
        return None
    return parsed.astimezone(UTC)


@cache
def _validator(schema: str) -> Draft202012Validator:
    """The validator of one CDEvent type; its `$ref`s resolve to the bundled link schemas."""
    root = resources.files("incidentflow.sources") / "cdevents_schemas"
    documents = [json.loads((root / f"{schema}.json").read_text())]
    documents += [json.loads(f.read_text()) for f in (root / "links").iterdir() if f.name.endswith(".json")]
    registry: Registry[Any] = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in documents
    )
    return Draft202012Validator(documents[0], registry=registry)
