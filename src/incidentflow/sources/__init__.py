"""Source adapters: one pure module per vendor format, payload -> canonical events."""

from __future__ import annotations

import json
from typing import Any

from incidentflow.domain.envelope import RawEnvelope
from incidentflow.sources import (
    alertmanager,
    cdevents,
    elven,
    flashduty,
    github,
    gitlab,
    native,
    pagerduty,
    sleuth,
    uptrends,
)
from incidentflow.sources.base import Adapter, Context, Event, FieldError, PayloadError

ADAPTERS: dict[str, Adapter] = {
    "elven": elven.parse,
    "sleuth": sleuth.parse,
    "uptrends": uptrends.parse,
    "flashduty-alert": flashduty.parse_alert,
    "flashduty-change": flashduty.parse_change,
    "native": native.parse,
    "cloudevents": cdevents.parse,
    "alertmanager": alertmanager.parse,
    "pagerduty": pagerduty.parse,
    "github": github.parse,
    "gitlab": gitlab.parse,
}

HEADERS: dict[str, tuple[str, ...]] = {
    "cloudevents": ("ce-", "content-type"),
    "github": (github.EVENT_HEADER, github.DELIVERY_HEADER),
    "gitlab": (gitlab.EVENT_HEADER,),
}
"""Per source, the request headers (names or prefixes, lower case) its adapter reads; the gateway keeps
them in the raw envelope so that the worker's normalization reads the same."""


def kept_headers(source: str, headers: Any) -> dict[str, str]:
    """The request headers a source's adapter reads (`HEADERS`), from a request's header items."""
    wanted = HEADERS.get(source)
    if not wanted:
        return {}
    return {k: v for k, v in headers.items() if k.startswith(wanted)}


class MalformedBody(ValueError):
    """The body is not JSON (or not UTF-8): the gateway answers 400."""


def decode(body: bytes | str) -> Any:
    """Decode a webhook body; runs in the gateway before any adapter."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise MalformedBody(f"body is not valid JSON: {error}") from None


def parse(source: str, payload: Any, ctx: Context) -> list[Event]:
    """Canonical events of one decoded body; raises PayloadError when the payload is invalid."""
    adapter = ADAPTERS.get(source)
    if adapter is None:
        raise PayloadError([FieldError("source", f"unknown source {source!r}")])
    return adapter(payload, ctx)


def parse_envelope(envelope: RawEnvelope, change_type_label: str = "change_type") -> list[Event]:
    """The worker's normalization: the same adapter the gateway validated with, run again."""
    try:
        payload = decode(envelope.body)
    except MalformedBody as error:
        raise PayloadError([FieldError("body", str(error))]) from None
    return parse(envelope.source, payload, Context.of(envelope, change_type_label=change_type_label))


__all__ = [
    "ADAPTERS",
    "HEADERS",
    "Context",
    "Event",
    "FieldError",
    "MalformedBody",
    "PayloadError",
    "decode",
    "kept_headers",
    "parse",
    "parse_envelope",
]
