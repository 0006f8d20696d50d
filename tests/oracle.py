"""Independent batch recomputation of incidents and metrics from a plain list of events.

Written apart from `incidentflow.domain` on purpose (it shares only the record models and the
severity order of DESIGN.md): tests compare the streaming path against it, so a bug has to be
made twice, differently, to go unnoticed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from incidentflow.domain.events import AlertEvent

RANK = ["informational", "low", "moderate", "high", "critical"]


def _higher(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if RANK.index(a) >= RANK.index(b) else b


def recompute_incident(events: list[AlertEvent]) -> dict[str, Any] | None:
    """The expected incident (as the JSON dict the topic carries) of one aggregate's events."""
    by_id: dict[str, AlertEvent] = {}
    for e in events:
        old = by_id.get(e.event_id)
        if old is None or (e.occurred_at, e.received_at, e.model_dump_json()) < (
            old.occurred_at,
            old.received_at,
            old.model_dump_json(),
        ):
            by_id[e.event_id] = e
    ordered = sorted(by_id.values(), key=lambda e: (e.occurred_at, e.event_id))

    opened: list[datetime] = []
    closed: list[datetime | None] = []
    waiting_resolve = False
    peak: str | None = None
    current: str | None = None
    title = description = url = None
    labels: dict[str, str] = {}
    last = None
    for e in ordered:
        title = e.title if e.title is not None else title
        description = e.description if e.description is not None else description
        url = e.url if e.url is not None else url
        labels.update(e.labels)
        current = e.severity if e.severity is not None else current
        last = e
        if not opened:
            if e.action == "resolve":
                waiting_resolve = True
                continue
            opened.append(e.occurred_at)
            closed.append(e.occurred_at if waiting_resolve else None)
            peak = e.severity  # whatever opens the incident, a heartbeat too, sets its first severity
            continue
        is_open = closed[-1] is None
        if e.action in ("open", "reopen"):
            if not is_open:
                opened.append(e.occurred_at)
                closed.append(None)
            peak = _higher(peak, e.severity)
        elif e.action == "resolve" and is_open:
            closed[-1] = e.occurred_at
    if not opened or last is None:
        return None
    status = "open" if closed[-1] is None else "resolved"
    seconds = sum((c - o).total_seconds() for o, c in zip(opened, closed, strict=True) if c is not None)
    return {
        "aggregate_id": last.aggregate_id,
        "integration": last.integration,
        "source": last.source,
        "external_aggregate_key": last.external_aggregate_key,
        "status": status,
        "severity": peak,
        "current_severity": current,
        "title": title,
        "description": description,
        "url": url,
        "labels": labels,
        "opened_at": opened[0],
        "resolved_at": closed[-1],
        "episodes": [{"opened_at": o, "resolved_at": c} for o, c in zip(opened, closed, strict=True)],
        "reopen_count": len(opened) - 1,
        "time_to_restore_seconds": seconds if status == "resolved" else None,
        "last_event_at": last.occurred_at,
        "event_count": len(ordered),
        "version": len(ordered),
    }


def incident_dict(incident: Any) -> dict[str, Any] | None:
    """An `Incident` model (or None) as the plain dict `recompute_incident` returns."""
    if incident is None:
        return None
    data: dict[str, Any] = incident.model_dump(mode="python")
    data["episodes"] = [dict(e) for e in data["episodes"]]
    return data


def recompute_mttr(incidents: list[dict[str, Any]], now: datetime, window: timedelta) -> dict[tuple[str, str], float]:
    """Mean time to restore per (service, peak severity) of incidents finally resolved in (now-window, now]."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for inc in incidents:
        if inc["status"] != "resolved":
            continue
        if now - window < inc["resolved_at"] <= now:
            series = (inc["labels"].get("service") or "unknown", inc["severity"] or "unknown")
            seconds[series].append(inc["time_to_restore_seconds"])
    return {k: sum(v) / len(v) for k, v in seconds.items()}


def recompute_open(incidents: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for inc in incidents:
        if inc["status"] == "open":
            counts[(inc["labels"].get("service") or "unknown", inc["severity"] or "unknown")] += 1
    return dict(counts)
