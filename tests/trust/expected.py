"""What the pipeline must end with for some traffic: a plain batch computation over its events.

Everything here comes from `tests/oracle.py` (written apart from the streaming code) and the
events the generator says its webhooks mean; nothing calls the adapters, the fold or the stages.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from incidentflow.domain.events import AlertEvent, ChangeEvent, PushEvent
from tests.oracle import (
    environment,
    recompute_change,
    recompute_change_failure,
    recompute_correlations,
    recompute_history,
    recompute_incident,
    recompute_leads,
    recompute_recovery,
)
from tests.trust.traffic import FLEET, Webhook, elven_events

MttrRows = dict[tuple[str, str, str, str], tuple[int, float, float]]
ChangeRows = dict[tuple[str, str, str], tuple[int, int, int, int]]
RecoveryRows = dict[tuple[str, str, str], tuple[int, float, float]]
LeadRows = dict[tuple[str, str, str], tuple[int, float, float]]


@dataclass(frozen=True)
class Expected:
    incidents: dict[str, dict[str, Any]]
    """The incident record by aggregate_id, as the JSON on `incidentflow.incidents`."""
    correlations: dict[tuple[str, str], dict[str, Any]]
    """Live pairs (aggregate_id, change_id) with their evidence."""
    mttr_rows: MttrRows
    """(service, env, severity, day) -> (resolved incidents, sum and max of time to restore)."""
    change_rows: ChangeRows
    """(service, env, day) -> (changes, failed changes, reworked changes, rollbacks)."""
    recovery_rows: RecoveryRows
    """(service, env, day it recovered) -> (failed changes recovered, sum and max of their recovery time)."""
    lead_rows: LeadRows
    """(service, env, day of change time) -> (changes with a commit time, sum and max of their lead time)."""
    events: int
    """Distinct canonical events: alerts and changes (pushes are not counted)."""


def expect(webhooks: list[Webhook], elven_received: dict[str, datetime]) -> Expected:
    """The expectation from every distinct webhook (duplicates add nothing) and Elven's receive times."""
    alerts: dict[str, list[AlertEvent]] = defaultdict(list)
    changes: dict[str, list[ChangeEvent]] = defaultdict(list)
    pushes: list[dict[str, Any]] = []
    # One event may stand behind several webhooks (Alertmanager's repeats, and its resolved
    # notification carrying the open): each counts once.
    distinct = {(_identity(e), e.event_id): e for w in webhooks for e in w.events}
    for e in distinct.values():
        if isinstance(e, AlertEvent):
            alerts[e.aggregate_id].append(e)
        elif isinstance(e, ChangeEvent):
            changes[e.change_id].append(e)
        else:
            pushes.append({"repository": e.repository, "before": e.before, "after": e.after,
                           "commits": [c.timestamp for c in e.commits]})  # fmt: skip
    for e in elven_events(webhooks, elven_received):
        alerts[e.aggregate_id].append(e)
    incidents = [i for i in (recompute_incident(evs) for evs in alerts.values()) if i is not None]
    folded = [recompute_change(evs) for evs in changes.values()]
    windows = {name: i.window for name, i in FLEET.items()}
    correlations = recompute_correlations(incidents, folded, windows)
    history = recompute_history(folded, incidents)
    leads = recompute_leads(folded, pushes, history)
    return Expected(
        incidents={i["aggregate_id"]: json.loads(json.dumps(i, default=_rfc3339)) for i in incidents},
        correlations=correlations,
        mttr_rows=mttr_rows(incidents),
        change_rows=recompute_change_failure(folded, correlations, history),
        recovery_rows=recovery_rows(incidents, folded, correlations, history),
        lead_rows=lead_rows([{**c, "committed_at": leads.get(c["change_id"])} for c in folded]),
        events=sum(len(evs) for evs in alerts.values()) + sum(len(evs) for evs in changes.values()),
    )


def _identity(event: AlertEvent | ChangeEvent | PushEvent) -> str:
    if isinstance(event, AlertEvent):
        return event.aggregate_id
    return event.change_id if isinstance(event, ChangeEvent) else event.repository


def mttr_rows(incidents: list[dict[str, Any]]) -> MttrRows:
    """Resolved incidents per service, env, peak severity and UTC day of their final resolution."""
    restores: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for inc in incidents:
        if inc["status"] == "resolved":
            key = (inc["labels"].get("service") or "unknown", environment(inc["labels"]), inc["severity"] or "unknown",
                   inc["resolved_at"].date().isoformat())  # fmt: skip
            restores[key].append(inc["time_to_restore_seconds"])
    return {k: (len(v), sum(v), max(v)) for k, v in restores.items()}


def recovery_rows(
    incidents: list[dict[str, Any]], changes: list[dict[str, Any]], correlations: dict[tuple[str, str], Any],
    history: dict[str, dict[str, Any]],
) -> RecoveryRows:  # fmt: skip
    """Failed changes that recovered, per service, env and UTC day they recovered."""
    recovered = recompute_recovery(incidents, changes, correlations, history)
    durations: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for change in changes:
        if change["change_id"] in recovered:
            at, seconds = recovered[change["change_id"]]
            key = (change["labels"].get("service") or "unknown", environment(change["labels"]), at.date().isoformat())
            durations[key].append(seconds)
    return {k: (len(v), sum(v), max(v)) for k, v in durations.items()}


def lead_rows(changes: list[dict[str, Any]]) -> LeadRows:
    """Lead times (change time - earliest commit, 0 at least) of the counted changes that have a
    commit time, per service, env and UTC day of change time."""
    leads: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for change in changes:
        if change["counted"] and change["committed_at"] is not None:
            key = (change["labels"].get("service") or "unknown", environment(change["labels"]),
                   change["changed_at"].date().isoformat())  # fmt: skip
            leads[key].append(max(0.0, (change["changed_at"] - change["committed_at"]).total_seconds()))
    return {k: (len(v), sum(v), max(v)) for k, v in leads.items()}


def _rfc3339(value: object) -> str:
    assert isinstance(value, datetime)
    return value.isoformat().replace("+00:00", "Z")
