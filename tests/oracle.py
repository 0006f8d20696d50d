"""Independent batch recomputation of incidents and metrics from a plain list of events.

Written apart from `incidentflow.domain` on purpose (it shares only the record models and the
severity order of DESIGN.md): tests compare the streaming path against it, so a bug has to be
made twice, differently, to go unnoticed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from incidentflow.domain import dora
from incidentflow.domain.events import AlertEvent
from incidentflow.domain.incident import MAX_EPISODES

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
    dropped = max(0, len(opened) - MAX_EPISODES)  # the record lists the latest episodes only
    earlier_seconds = sum(
        ((c or o) - o).total_seconds() for o, c in zip(opened[:dropped], closed[:dropped], strict=True)
    )
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
        "episodes": [{"opened_at": o, "resolved_at": c} for o, c in zip(opened, closed, strict=True)][dropped:],
        "earlier_episodes": dropped,
        "earlier_episodes_seconds": float(earlier_seconds),
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


def environment(labels: dict[str, str]) -> str:
    """DESIGN.md: the `env`, `environment` or `deployment.environment.name` label, else `unknown`."""
    return labels.get("env") or labels.get("environment") or labels.get("deployment.environment.name") or "unknown"


def recompute_mttr(
    incidents: list[dict[str, Any]], now: datetime, window: timedelta
) -> dict[tuple[str, str, str], float]:
    """Mean time to restore per (service, env, peak severity) of incidents finally resolved in (now-window, now]."""
    seconds: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for inc in incidents:
        if inc["status"] != "resolved":
            continue
        if now - window < inc["resolved_at"] <= now:
            series = (
                inc["labels"].get("service") or "unknown",
                environment(inc["labels"]),
                inc["severity"] or "unknown",
            )
            seconds[series].append(inc["time_to_restore_seconds"])
    return {k: sum(v) / len(v) for k, v in seconds.items()}


def recompute_open(incidents: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for inc in incidents:
        if inc["status"] == "open":
            counts[
                (inc["labels"].get("service") or "unknown", environment(inc["labels"]), inc["severity"] or "unknown")
            ] += 1
    return dict(counts)


# --- changes and correlations ---------------------------------------------------------------

SCOPE = ("service", "cluster", "host", "namespace", "app")
CONFLICT = ("env", "environment", "region")


def recompute_change(events: list[Any]) -> dict[str, Any]:
    """A change from all its events: labels and status of the latest event per key, change time = first processing/done."""
    ordered = sorted({e.event_id: e for e in events}.values(), key=lambda e: (e.occurred_at, e.event_id))
    labels: dict[str, str] = {}
    for e in ordered:
        labels.update(e.labels)
    started = [e.occurred_at for e in ordered if e.status in ("processing", "done")]
    last = ordered[-1].status
    counted = bool(started) and last in ("processing", "done")
    kinds = [e.kind for e in ordered if getattr(e, "kind", "deployment") != "deployment"]
    versions = [e.version for e in ordered if getattr(e, "version", None) is not None]
    return {
        "change_id": ordered[0].change_id,
        "labels": labels,
        "changed_at": min(started) if started else None,
        "counted": counted,
        "committed_at": min((e.committed_at for e in ordered if e.committed_at is not None), default=None),
        "kind": kinds[-1] if kinds else "deployment",
        "version": versions[-1] if versions else None,
    }


def recompute_history(changes: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """DESIGN.md's rollbacks and rework, per counted change_id: `rollback`, `rework`, and
    `rolled_back_at` (the time of the rollback that undoes it, or None).

    Per service and env, in order of change time (then change_id): a change is a rollback when its
    kind is `rollback`, or when its version was deployed by an earlier change while the latest
    earlier change with a version had another; a rollback undoes the change just before it. Rework:
    rollback, hotfix or revert, or a change time after an episode of an incident of the same
    service and env opened and no later than it resolved."""

    def key(labels: dict[str, str]) -> tuple[str, str]:
        return labels.get("service") or "unknown", environment(labels)

    open_spans: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for incident in incidents:
        for episode in incident["episodes"]:
            resolved = episode["resolved_at"]
            open_spans[key(incident["labels"])].append(
                (_parse(episode["opened_at"]), None if resolved is None else _parse(resolved))
            )
    lines: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        if change["counted"]:
            lines[key(change["labels"])].append(change)
    result: dict[str, dict[str, Any]] = {}
    for series, line in lines.items():
        line.sort(key=lambda c: (c["changed_at"], c["change_id"]))
        for i, change in enumerate(line):
            earlier = [c["version"] for c in line[:i] if c.get("version") is not None]
            again = (change.get("version") is not None and bool(earlier) and earlier[-1] != change["version"]
                     and change["version"] in earlier)  # fmt: skip
            rollback = change.get("kind") == "rollback" or again
            at = change["changed_at"]
            during = any(o < at and (r is None or at <= r) for o, r in open_spans[series])
            result[change["change_id"]] = {
                "rollback": rollback,
                "rework": rollback or change.get("kind") in ("hotfix", "revert") or during,
                "rolled_back_at": None,
                "previous": earlier[-1] if earlier and change.get("version") is not None else None,
            }
        for i, change in enumerate(line[1:], start=1):
            if result[change["change_id"]]["rollback"]:
                result[line[i - 1]["change_id"]]["rolled_back_at"] = change["changed_at"]
    return result


def recompute_leads(
    changes: list[dict[str, Any]], pushes: list[dict[str, Any]], history: dict[str, dict[str, Any]]
) -> dict[str, datetime | None]:
    """DESIGN.md's commit time per counted change_id: an event's explicit `committed_at`, else for a change
    with a `repository` label and a version, the earliest commit of the pushes it ships.

    `pushes` are dicts with `repository`, `before` (None at the start of a ref), `after` and `commits`
    (their times). The shas a deployment ships are those reachable from its version through the pushes'
    `after` -> `before` links, stopping at the version of the previous deployment of its service and
    env (`history`'s `previous`); when a reachable sha other than that one has no push, the set is not
    known yet and there is no commit time (unless the deployment is its series' first with a version).
    A rollback ships nothing."""
    links: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen_pushes = set()
    for push in pushes:
        ident = (push["repository"], push["before"], push["after"], tuple(push["commits"]))
        if ident not in seen_pushes:
            seen_pushes.add(ident)
            links[(push["repository"], push["after"])].append(push)
    result: dict[str, datetime | None] = {}
    for change in changes:
        if not change["counted"]:
            continue
        cid = change["change_id"]
        if change.get("committed_at") is not None:
            result[cid] = change["committed_at"]
            continue
        repository, version, h = change["labels"].get("repository"), change.get("version"), history.get(cid)
        if not repository or version is None or h is None or h["rollback"]:
            result[cid] = None
            continue
        until = h["previous"]
        reachable, frontier, known = set(), [version], True
        while frontier:
            nxt = []
            for sha in frontier:
                if sha == until or sha in reachable:
                    continue
                reachable.add(sha)
                found = links.get((repository, sha), [])
                if not found and until is not None:
                    known = False
                nxt += [p["before"] for p in found if p["before"] is not None]
            frontier = nxt
        times = [t for sha in reachable for p in links.get((repository, sha), []) for t in p["commits"]]
        result[cid] = min(times) if known and times else None
    return result


def recompute_correlations(
    incidents: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    windows: dict[str, tuple[float, float]] | None = None,
    scope: tuple[str, ...] = SCOPE,
    conflict: tuple[str, ...] = CONFLICT,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Live correlations by (aggregate_id, change_id): every pair checked, ranked per incident.

    `windows` maps an integration to (lookback, lookahead) in minutes; (60, 5) otherwise.
    """
    result: dict[tuple[str, str], dict[str, Any]] = {}
    counted = sorted((c for c in changes if c["counted"]), key=lambda c: c["changed_at"])
    times = [c["changed_at"] for c in counted]
    for incident in incidents:
        opened = _parse(incident["opened_at"])
        back, ahead = (windows or {}).get(incident["integration"], (60.0, 5.0))
        found = []
        # only the changes whose time can fall in the window (edges included) need a look
        first = bisect_left(times, opened - timedelta(minutes=back))
        last = bisect_right(times, opened + timedelta(minutes=ahead))
        for change in counted[first:last]:
            gap = (opened - change["changed_at"]).total_seconds()
            if gap > back * 60 or gap < -ahead * 60:
                continue
            shared = {k: v for k, v in incident["labels"].items() if k in scope and change["labels"].get(k) == v}
            clash = [k for k in conflict if k in incident["labels"] and k in change["labels"]
                     and incident["labels"][k] != change["labels"][k]]  # fmt: skip
            if not shared or clash:
                continue
            edge = max(back, ahead) * 60
            near = 1 - abs(gap) / edge if edge else 1.0
            found.append((round((len(shared) - 1 + near) / len(scope), 6), abs(gap), change["change_id"], gap, shared))
        found.sort(key=lambda f: (-f[0], f[1], f[2]))
        for rank, (score, _, change_id, gap, shared) in enumerate(found, start=1):
            result[(incident["aggregate_id"], change_id)] = {
                "delta_seconds": gap, "matched_labels": shared, "score": score, "rank": rank,
            }  # fmt: skip
    return result


def live_correlations(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest record per pair from a correlations topic, retracted ones left out."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        latest[(record["aggregate_id"], record["change_id"])] = record
    return {
        pair: {k: r[k] for k in ("delta_seconds", "matched_labels", "score", "rank")}
        for pair, r in latest.items()
        if not r["retracted"]
    }


def recompute_change_failure(
    changes: list[dict[str, Any]], correlations: dict[tuple[str, str], dict[str, Any]],
    history: dict[str, dict[str, Any]] | None = None,
) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:  # fmt: skip
    """(changes, failed changes, reworked changes, rollbacks) per (service, env, UTC day of change
    time); a change fails with a live correlation or when a rollback undoes it (`history`)."""
    history = history or {}
    failed = {change_id for _, change_id in correlations}
    failed |= {change_id for change_id, h in history.items() if h["rolled_back_at"] is not None}
    result: dict[tuple[str, str, str], tuple[int, int, int, int]] = defaultdict(lambda: (0, 0, 0, 0))
    for change in changes:
        if not change["counted"]:
            continue
        key = (change["labels"].get("service") or "unknown", environment(change["labels"]),
               change["changed_at"].date().isoformat())  # fmt: skip
        count, bad, rework, rollbacks = result[key]
        h = history.get(change["change_id"], {})
        result[key] = (count + 1, bad + (change["change_id"] in failed), rework + bool(h.get("rework")),
                       rollbacks + bool(h.get("rollback")))  # fmt: skip
    return dict(result)


def recompute_recovery(
    incidents: list[dict[str, Any]], changes: list[dict[str, Any]], correlations: dict[tuple[str, str], Any],
    history: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[datetime, float]]:  # fmt: skip
    """Failed deployment recovery per change_id: (when it recovered, seconds from the change time to
    then), for the failed changes whose every live correlated incident is resolved now: the latest
    of their resolutions and of the rollback that undid the change (`history`)."""
    history = history or {}
    by_id = {i["aggregate_id"]: i for i in incidents}
    correlated: dict[str, list[str]] = defaultdict(list)
    for aggregate_id, change_id in correlations:
        correlated[change_id].append(aggregate_id)
    result = {}
    for change in changes:
        found = correlated.get(change["change_id"], [])
        rolled_back = history.get(change["change_id"], {}).get("rolled_back_at")
        if not change["counted"] or not (found or rolled_back):
            continue
        if any(by_id[a]["status"] != "resolved" for a in found):
            continue
        recovered = max([_parse(by_id[a]["resolved_at"]) for a in found] + ([rolled_back] if rolled_back else []))
        result[change["change_id"]] = (recovered, max(0.0, (recovered - change["changed_at"]).total_seconds()))
    return result


def _parse(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _rank(values: list[float], q: float) -> float | None:
    """The nearest-rank q-quantile: the value at rank floor(q * (n - 1)) of the sorted values."""
    return sorted(values)[int(q * (len(values) - 1))] if values else None


def recompute_report(
    incidents: list[dict[str, Any]], changes: list[dict[str, Any]], correlations: dict[tuple[str, str], Any],
    first: Any, last: Any, benchmark: Any = "2024",
) -> dict[tuple[str, str], dict[str, Any]]:  # fmt: skip
    """What `incidentflow report --json` should say per (service, env) for UTC days first..last."""
    history = recompute_history(changes, incidents)
    failed = {change_id for _, change_id in correlations}
    failed |= {change_id for change_id, h in history.items() if h["rolled_back_at"] is not None}
    recovered = recompute_recovery(incidents, changes, correlations, history)
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        key = (labels.get("service") or "unknown", environment(labels))
        return out.setdefault(key, {"restores": [], "changes": 0, "failed_changes": 0, "leads": [], "recoveries": [],
                                    "reworked": 0, "rollbacks": 0})  # fmt: skip

    for incident in incidents:
        if incident["status"] != "resolved":
            continue
        if first <= _parse(incident["resolved_at"]).date() <= last:
            entry(incident["labels"])["restores"].append(incident["time_to_restore_seconds"])
    for change in changes:
        if change["counted"] and first <= change["changed_at"].date() <= last:
            e = entry(change["labels"])
            e["changes"] += 1
            e["failed_changes"] += change["change_id"] in failed
            e["reworked"] += history[change["change_id"]]["rework"]
            e["rollbacks"] += history[change["change_id"]]["rollback"]
            if change.get("committed_at") is not None:
                e["leads"].append(max(0.0, (change["changed_at"] - change["committed_at"]).total_seconds()))
        if change["change_id"] in recovered and first <= recovered[change["change_id"]][0].date() <= last:
            entry(change["labels"])["recoveries"].append(recovered[change["change_id"]][1])
    return {
        service: {
            "incidents": len(e["restores"]),
            "mttr_seconds": sum(e["restores"]) / len(e["restores"]) if e["restores"] else None,
            "median_seconds": _rank(e["restores"], 0.5),
            "p90_seconds": _rank(e["restores"], 0.9),
            "max_seconds": max(e["restores"]) if e["restores"] else None,
            "changes": e["changes"],
            "failed_changes": e["failed_changes"],
            "change_failure_rate": e["failed_changes"] / e["changes"] if e["changes"] else None,
            "reworked_changes": e["reworked"],
            "rework_rate": e["reworked"] / e["changes"] if e["changes"] else None,
            "rollbacks": e["rollbacks"],
            "deployments_per_day": e["changes"] / ((last - first).days + 1),
            "lead_times": len(e["leads"]),
            "lead_time_mean_seconds": sum(e["leads"]) / len(e["leads"]) if e["leads"] else None,
            "lead_time_median_seconds": _rank(e["leads"], 0.5),
            "lead_time_p90_seconds": _rank(e["leads"], 0.9),
            "lead_time_max_seconds": max(e["leads"]) if e["leads"] else None,
            "recoveries": len(e["recoveries"]),
            "recovery_mean_seconds": sum(e["recoveries"]) / len(e["recoveries"]) if e["recoveries"] else None,
            "recovery_median_seconds": _rank(e["recoveries"], 0.5),
            "recovery_p90_seconds": _rank(e["recoveries"], 0.9),
            "recovery_max_seconds": max(e["recoveries"]) if e["recoveries"] else None,
            # the levels of these figures (the thresholds are unit-tested in tests/unit/domain/test_dora.py)
            "deployment_frequency_level": dora.deployment_frequency(
                e["changes"] / ((last - first).days + 1), benchmark
            ),
            "lead_time_level": dora.lead_time(_rank(e["leads"], 0.5), benchmark),
            "change_failure_rate_level": dora.change_failure_rate(
                e["failed_changes"] / e["changes"] if e["changes"] else None, benchmark
            ),
            "time_to_restore_level": dora.recovery_time(_rank(e["restores"], 0.5), benchmark),
            "recovery_level": dora.recovery_time(_rank(e["recoveries"], 0.5), benchmark),
            "benchmark": benchmark,
        }
        for service, e in sorted(out.items())
    }
