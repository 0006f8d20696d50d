"""The gateway's routes: authenticate, limit, validate, publish raw, and answer 202 only after Kafka's ack."""

from __future__ import annotations

import functools
import ipaddress
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from incidentflow import __version__, sources
from incidentflow.config import Integration, Integrations, Settings
from incidentflow.domain.envelope import RawEnvelope
from incidentflow.gateway import guards
from incidentflow.gateway.publisher import Publisher, PublishError
from incidentflow.metrics.gateway import GatewayMetrics
from incidentflow.sources.base import PayloadError
from incidentflow.topics import Topics, ensure_topics

log = logging.getLogger("incidentflow.gateway")


@dataclass(frozen=True)
class Route:
    source: str
    path: str
    payload: type[BaseModel] | tuple[type[BaseModel], ...] | dict[str, Any]
    """The documented body: a model, one of several models, or a JSON Schema."""
    summary: str
    media: dict[str, dict[str, Any]] | None = None
    """More media types the route reads, with the JSON Schema of each (besides `application/json`)."""
    ignores: bool = False
    """Some valid webhooks of the source mean no event (event types the product does not read): 204."""
    headers: dict[str, str] | None = None
    """Request headers the route requires, with their description (the OpenAPI document)."""


ROUTES = (
    Route("elven", "/v1/ingest/elven", sources.elven.ElvenPayload, "Elven Platform incident (alarmed/resolved)"),
    Route("sleuth", "/v1/ingest/sleuth", sources.sleuth.SleuthPayload, "Sleuth custom incident impact"),
    Route("uptrends", "/v1/ingest/uptrends", sources.uptrends.TEMPLATE_SCHEMA, "Uptrends alert (Alert, Reminder, Ok)"),
    Route("flashduty-alert", "/v1/ingest/flashduty/alert", sources.flashduty.FlashdutyAlert, "Flashduty alert event"),
    Route(
        "flashduty-change", "/v1/ingest/flashduty/change", sources.flashduty.FlashdutyChange, "Flashduty change event"
    ),
    Route(
        "native",
        "/v1/events",
        (sources.native.NativeAlert, sources.native.NativeChange),
        "Native canonical alert or change",
    ),
    Route(
        "cloudevents",
        "/v1/cloudevents",
        sources.cdevents.CDEVENT_SCHEMA,
        "CloudEvents 1.0 carrying CDEvents 0.5 (binary, structured or batch mode)",
        {
            sources.cdevents.STRUCTURED: sources.cdevents.CLOUDEVENT_SCHEMA,
            sources.cdevents.BATCH: sources.cdevents.BATCH_SCHEMA,
        },
    ),
    Route(
        "alertmanager",
        "/v1/ingest/alertmanager",
        sources.alertmanager.AlertmanagerPayload,
        "Prometheus Alertmanager webhook notification (version 4): each alert is an incident",
    ),
    Route(
        "pagerduty",
        "/v1/ingest/pagerduty",
        sources.pagerduty.WEBHOOK_SCHEMA,
        "PagerDuty V3 webhook: incident.triggered, incident.resolved, incident.reopened (others: 204, nothing stored)",
        ignores=True,
    ),
    Route(
        "github",
        "/v1/ingest/github",
        sources.github.BODY_SCHEMA,
        "GitHub webhook by X-GitHub-Event: deployment_status (a change), push (commits for lead time); others: 204",
        ignores=True,
        headers={sources.github.EVENT_HEADER: "The GitHub event type (deployment_status, push, ping, ...)"},
    ),
    Route(
        "gitlab",
        "/v1/ingest/gitlab",
        sources.gitlab.BODY_SCHEMA,
        "GitLab webhook: Deployment Hook (a change), Push Hook (commits for lead time); others: 204",
        ignores=True,
    ),
)

Verifier = Callable[[Mapping[str, str], bytes, str, float], bool]
VERIFIERS: dict[str, Verifier] = {"pagerduty": sources.pagerduty.verify, "github": sources.github.verify}
"""How an integration's `hmac_secret` signs a source's webhooks: the vendor's own scheme where it has one,
else Standard Webhooks (`guards.verify`)."""


class Rejected(Exception):
    """A request answered with an error status before anything reached Kafka."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class Ignored(Exception):
    """A valid webhook that means no event (an event type the product does not read): 204, nothing stored."""


UNAUTHORIZED = Rejected(401, {"error": "unauthorized", "detail": "unknown, revoked or missing token"})


class Gateway:
    """The request handling of all ingest routes, shared by every route."""

    def __init__(self, settings: Settings, integrations: Integrations, publisher: Publisher) -> None:
        self.settings = settings
        self.integrations = integrations
        self.publisher = publisher
        self.topic = Topics.of(settings).raw
        self.metrics = GatewayMetrics()
        self.buckets = {name: guards.TokenBucket(i.rate_limit_per_minute) for name, i in integrations.by_name.items()}
        self.proxies = tuple(ipaddress.ip_network(c, strict=False) for c in settings.trusted_proxies)
        # Request ids: 16 random hex digits per process, then a counter; as unique as a uuid4 and a
        # tenth of its cost.
        self._id_prefix, self._ids = os.urandom(8).hex(), itertools.count()

        @functools.lru_cache(maxsize=4096)
        def allowed(address: str | None, integration: str) -> bool:
            return guards.allowed(address, integrations.by_name[integration].networks)

        self._allowed = allowed

    async def ingest(self, request: Request, source: str, path_token: str | None) -> Response:
        started = time.perf_counter()
        request_id = f"{self._id_prefix}{next(self._ids):016x}"
        integration: Integration | None = None
        try:
            integration = self._authenticate(source, path_token, request)
            self._admit(integration, request)
            body = await self._read(request)
            verify = VERIFIERS.get(source, guards.verify)
            if integration.hmac_secret and not verify(request.headers, body, integration.hmac_secret, time.time()):
                raise UNAUTHORIZED
            envelope = self._envelope(request, source, integration, body, request_id)
            key = await self._validate(source, envelope)
            if key is None:
                raise Ignored
            try:
                await self.publisher.publish(self.topic, key, envelope.model_dump_json().encode())
            except PublishError as error:
                log.warning("publish failed request_id=%s integration=%s: %s", request_id, integration.name, error)
                retry = str(self.settings.retry_after_seconds)
                raise Rejected(
                    503, {"error": "unavailable", "detail": "event not stored; retry"}, {"Retry-After": retry}
                ) from None
            response: Response = Response(
                b'{"request_id":"' + request_id.encode() + b'","status":"accepted"}', 202, media_type="application/json"
            )
        except Rejected as rejected:
            response = JSONResponse({**rejected.body, "request_id": request_id}, rejected.status, rejected.headers)
        except Ignored:
            response = Response(status_code=204, headers={"X-Request-Id": request_id})
        name = integration.name if integration else "unknown"
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(source, name, str(response.status_code)).inc()
        self.metrics.latency.labels(source).observe(elapsed)
        # Accepted requests are counted, not logged one by one at INFO: at production rates that
        # line would cost more than the validation. Every refusal is logged.
        level = logging.DEBUG if response.status_code == 202 else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level, "%s %s source=%s integration=%s status=%d request_id=%s ms=%.1f",
                request.method, _route_template(source), source, name, response.status_code, request_id, elapsed * 1000,
            )  # fmt: skip
        return response

    def _authenticate(self, source: str, path_token: str | None, request: Request) -> Integration:
        token = path_token
        if token is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
            if token is None and source == "gitlab":  # GitLab sends the webhook's secret token this way
                token = request.headers.get(sources.gitlab.TOKEN_HEADER, "").strip() or None
        integration = self.integrations.authenticate(token) if token else None
        if integration is None or integration.source != source:
            raise UNAUTHORIZED
        return integration

    def _admit(self, integration: Integration, request: Request) -> None:
        peer = request.client.host if request.client else None
        address = guards.client_address(peer, request.headers.get("x-forwarded-for"), self.proxies)
        if not self._allowed(address, integration.name):
            raise Rejected(403, {"error": "forbidden", "detail": "address not allowed for this integration"})
        wait = self.buckets[integration.name].take(time.monotonic())
        if wait > 0:
            retry = str(max(1, round(wait + 0.5)))
            raise Rejected(
                429, {"error": "rate_limited", "detail": "over the integration's rate limit"}, {"Retry-After": retry}
            )

    async def _read(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = Rejected(413, {"error": "too_large", "detail": f"body over {limit} bytes"})
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        # Straight from the ASGI messages (what `request.stream()` does, without its generator).
        chunks: list[bytes] = []
        size = 0
        receive = request.receive
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise Rejected(400, {"error": "malformed", "detail": "the client went away before the body ended"})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _envelope(
        self, request: Request, source: str, integration: Integration, body: bytes, request_id: str
    ) -> RawEnvelope:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, {"error": "malformed", "detail": "body is not UTF-8 JSON"}) from None
        key = request.headers.get("webhook-id") or request.headers.get("idempotency-key")
        headers = sources.kept_headers(source, request.headers)
        # Every field is the gateway's own or the validated integration's: built without validation.
        return RawEnvelope.model_construct(
            request_id=request_id,
            source=source,
            integration=integration.name,
            received_at=datetime.now(UTC),
            idempotency_key=key[:256] if key else None,
            labels=integration.labels,
            default_severity=integration.default_severity,
            max_labels=self.settings.max_labels,
            headers=headers,
            body=text,
        )

    async def _validate(self, source: str, envelope: RawEnvelope) -> bytes | None:
        """Run the adapter the worker will run; returns the Kafka key (the first event's identity),
        or None when the webhook means no event (a vendor's event type the product does not read)."""
        try:
            payload = sources.decode(envelope.body)
        except sources.MalformedBody as error:
            raise Rejected(400, {"error": "malformed", "detail": str(error)}) from None
        try:
            events = sources.parse(source, payload, sources.Context.of(envelope, checking=True))
        except PayloadError as error:
            fields = [{"field": e.field, "message": e.message} for e in error.errors]
            raise Rejected(422, {"error": "invalid", "detail": "payload failed validation", "errors": fields}) from None
        if not events:
            return None
        if source == "alertmanager":
            self._truncated(envelope.integration, sources.alertmanager.truncated(payload))
        first = events[0]
        identity = (getattr(first, "aggregate_id", None) or getattr(first, "change_id", None)
                    or getattr(first, "repository", None) or envelope.request_id)  # fmt: skip
        return str(identity).encode()

    def _truncated(self, integration: str, count: int) -> None:
        """Alerts Alertmanager left out of an accepted notification: nobody will send them, so say so."""
        if count:
            self.metrics.truncated_alerts.labels(integration).inc(count)
            log.warning("integration=%s: Alertmanager left %d alert(s) out of a notification (max_alerts)",
                        integration, count)  # fmt: skip


def _route_template(source: str) -> str:
    """The route with the token elided: tokens never reach a log line."""
    for route in ROUTES:
        if route.source == source:
            return f"{route.path}/{{token}}"
    return "/"


class GatewayApp(FastAPI):
    """FastAPI for documentation and operations, with a direct path for the ingest POSTs.

    Ingest requests are the hot path: they go straight to `Gateway.ingest` without FastAPI's
    middleware stack and routing, which cost as much as the handler itself. The same routes are
    declared on FastAPI too, so the OpenAPI document describes exactly what is served.
    """

    gateway: Gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = _INGEST.match(scope["path"])
            if target is not None:
                source, token = target
                try:
                    response = await self.gateway.ingest(Request(scope, receive), source, token)
                except Exception:  # noqa: BLE001  # the same last resort as FastAPI's ServerErrorMiddleware
                    log.exception("unexpected error in an ingest request")
                    response = JSONResponse({"error": "internal", "detail": "unexpected error"}, status_code=500)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _IngestPaths:
    """Ingest path -> (source, token or None), by exact match for bearer routes and by prefix for token routes."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.exact = {route.path: route.source for route in routes}

    def match(self, path: str) -> tuple[str, str | None] | None:
        source = self.exact.get(path)
        if source is not None:
            return source, None
        prefix, _, token = path.rpartition("/")
        source = self.exact.get(prefix)
        if source is not None and token:
            return source, token
        return None


_INGEST = _IngestPaths(ROUTES)


def create_app(settings: Settings, integrations: Integrations, publisher: Publisher) -> GatewayApp:
    """The gateway ASGI app; `publisher` is the Kafka producer (or a fake in unit tests)."""
    gateway = Gateway(settings, integrations, publisher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await ensure_topics(settings, [gateway.topic])
        except Exception as error:  # noqa: BLE001  # Kafka may be down at start; publishes answer 503 meanwhile
            log.warning("could not check the raw topic at start (%s); will answer 503 until Kafka answers", error)
        yield
        await publisher.close()

    app = GatewayApp(
        title="incidentflow gateway", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None
    )
    app.gateway = gateway

    for route in ROUTES:
        _add_ingest_routes(app, gateway, route)

    @app.get("/healthz", tags=["operations"], summary="The process is alive", response_model=dict[str, str])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["operations"], summary="Kafka answers", responses={503: {"description": "Kafka unreachable"}}
    )
    async def readyz() -> JSONResponse:
        ok = await publisher.ready()
        return JSONResponse({"status": "ready" if ok else "kafka unreachable"}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    return app


class Accepted(BaseModel):
    request_id: str
    status: Literal["accepted"]


class BadField(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    request_id: str
    errors: list[BadField] | None = Field(default=None, description="Every bad field (422 only).")


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored in Kafka (acks=all)", "model": Accepted},
    400: {"description": "Malformed JSON", "model": ErrorBody},
    401: {"description": "Unknown, revoked or missing token, or bad signature", "model": ErrorBody},
    403: {"description": "Address not allowed", "model": ErrorBody},
    413: {"description": "Body over the limit", "model": ErrorBody},
    422: {"description": "Payload failed validation; every bad field is listed", "model": ErrorBody},
    429: {"description": "Over the rate limit", "model": ErrorBody, "headers": RETRY_AFTER},
    503: {"description": "Kafka unreachable or slow; nothing stored", "model": ErrorBody, "headers": RETRY_AFTER},
}

IGNORED_RESPONSE = {"description": "A valid webhook of an event type the product does not read: nothing stored"}


def _add_ingest_routes(app: FastAPI, gateway: Gateway, route: Route) -> None:
    source = route.source

    async def with_path_token(request: Request, token: str) -> Response:
        return await gateway.ingest(request, source, token)

    async def with_bearer(request: Request) -> Response:
        return await gateway.ingest(request, source, None)

    extra = {"x-incidentflow-source": source}
    for path, endpoint, suffix in (
        (f"{route.path}/{{token}}", with_path_token, "token"),
        (route.path, with_bearer, "bearer"),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            summary=f"{route.summary} ({'token in path' if suffix == 'token' else 'Authorization: Bearer'})",
            operation_id=f"ingest_{source.replace('-', '_')}_{suffix}",
            tags=["ingest"],
            status_code=202,
            response_model=None,
            responses={**INGEST_RESPONSES, 204: IGNORED_RESPONSE} if route.ignores else INGEST_RESPONSES,
            openapi_extra=extra,
        )


class _NoKafka:
    """A publisher for building the app without Kafka (the OpenAPI document)."""

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        raise PublishError("no Kafka")

    async def ready(self) -> bool:
        return False

    async def close(self) -> None:
        pass


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI document, as served at /openapi.json (checked in as docs/openapi.json)."""
    return create_app(Settings(), Integrations({}), _NoKafka()).openapi()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with each ingest route's request body described by its payload model."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    bodies: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    media: dict[str, dict[str, Any]] = {}
    headers: dict[str, dict[str, str]] = {}
    for route in ROUTES:
        media[route.source] = route.media or {}
        headers[route.source] = route.headers or {}
        if isinstance(route.payload, dict):
            components[route.payload["title"]] = route.payload
            bodies[route.source] = {"$ref": f"#/components/schemas/{route.payload['title']}"}
        elif isinstance(route.payload, tuple):
            bodies[route.source] = {"oneOf": [ref(model) for model in route.payload]}
        else:
            bodies[route.source] = ref(route.payload)
    for item in schema.get("paths", {}).values():
        post = item.get("post")
        if post and "x-incidentflow-source" in post:
            source = post.pop("x-incidentflow-source")
            content = {"application/json": {"schema": bodies[source]}}
            for media_type, body_schema in media[source].items():
                components[body_schema["title"]] = body_schema
                content[media_type] = {"schema": {"$ref": f"#/components/schemas/{body_schema['title']}"}}
            post["requestBody"] = {"required": True, "content": content}
            for name, description in headers[source].items():
                post.setdefault("parameters", []).append(
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": description,
                        "schema": {"type": "string", "minLength": 1},
                    }  # fmt: skip
                )
    app.openapi_schema = schema
    return schema
