"""A seeded, deterministic generator of realistic alert histories, and the deliveries of them.

Deliveries are what a sender would do to the gateway: every event at least once, some twice or
more (retries), in shuffled order (late and out-of-order webhooks).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

SERVICES = ["checkout", "payments", "search", "auth", "catalog"]
SEVERITIES = ["critical", "high", "moderate", "low", None]


@dataclass(frozen=True)
class NativeAlert:
    """One alert event as the native route takes it (the integration comes from the token)."""

    body: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.body["external_aggregate_key"])


def alert_histories(seed: int, aggregates: int, mean_events: int, start: datetime | None = None) -> list[NativeAlert]:
    """Incidents with opens, resolves, reopens, heartbeats and severity changes, spread over days."""
    rnd = random.Random(seed)
    start = start or datetime(2026, 10, 1, tzinfo=UTC)
    events: list[NativeAlert] = []
    for a in range(aggregates):
        key = f"agg-{seed}-{a}"
        at = start + timedelta(minutes=rnd.randrange(0, 60 * 24 * 20))
        service = rnd.choice(SERVICES)
        for i in range(max(1, int(rnd.expovariate(1 / mean_events)) + 1)):
            action = rnd.choices(["open", "resolve", "reopen", "heartbeat"], weights=[4, 4, 1, 2])[0]
            at += timedelta(seconds=rnd.randrange(1, 3600))
            body: dict[str, Any] = {
                "event_id": f"{key}-e{i}",
                "external_aggregate_key": key,
                "action": action,
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
                "labels": {"service": service, "cluster": rnd.choice(["eu-1", "us-1"])},
            }
            severity = rnd.choice(SEVERITIES)
            if severity:
                body["severity"] = severity
            if rnd.random() < 0.5:
                body["title"] = f"{service} alert {rnd.randrange(5)}"
            events.append(NativeAlert(body))
    return events


T = TypeVar("T")


def deliveries(events: list[T], seed: int, duplicate_rate: float = 0.1) -> list[T]:
    """What senders do: every item once, a share of them again (retries), all in shuffled order."""
    rnd = random.Random(seed)
    delivered = list(events) + [e for e in events if rnd.random() < duplicate_rate]
    rnd.shuffle(delivered)
    return delivered


@dataclass(frozen=True)
class Posted:
    """One webhook body and the integration token it is posted with."""

    token: str
    body: dict[str, Any]


CLUSTERS = ["eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"]
FLEET = [*SERVICES, "orders", "inventory", "shipping", "billing", "gateway"]
ENVS = ["prod", "staging"]


def _at(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def correlated_traffic(
    seed: int, changes: int, alert_events: int, tokens: tuple[str, str, str], hours: int = 24 * 14
) -> list[Posted]:
    """Changes and incidents over services, clusters and environments, close enough in time to correlate.

    `tokens` are those of two alert integrations (which may have different windows) and a change
    integration. Changes go planned -> processing -> done, some stop at planned or get canceled, and
    a few are relabelled by a later event; most deploy a version of their own, some one from a small
    pool (deployed again after another: a rollback by version) and some none; a few are rollbacks,
    hotfixes or reverts by kind; incidents open, resolve and reopen. Every event is sent
    once in time order here; `shuffled_with_duplicates` adds duplicates and shuffles, which moves opens and change
    times backwards and so makes the pipeline retract correlations.
    """
    rnd = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    posted: list[Posted] = []
    for c in range(changes):
        labels = {"service": rnd.choice(FLEET), "cluster": rnd.choice(CLUSTERS), "env": rnd.choice(ENVS)}
        if rnd.random() < 0.3:
            labels["host"] = f"host-{rnd.randrange(8)}"
        at = start + timedelta(seconds=rnd.randrange(hours * 3600))
        draw = rnd.random()
        version = f"v{seed}.{c}" if draw < 0.7 else (f"v{rnd.randrange(4)}" if draw < 0.85 else None)
        kind = rnd.choices(["deployment", "rollback", "hotfix", "revert"], weights=[90, 4, 4, 2])[0]
        path = rnd.choices(
            [
                ["planned"],
                ["processing", "done"],
                ["planned", "processing", "done"],
                ["done"],
                ["processing", "canceled"],
            ],
            weights=[1, 4, 3, 3, 1],
        )[0]
        for i, status in enumerate(path):
            at += timedelta(seconds=rnd.randrange(30, 900))
            body = {"event_id": f"chg-{seed}-{c}-{i}", "change_key": f"chg-{seed}-{c}", "status": status,
                    "occurred_at": _at(at), "labels": dict(labels)}  # fmt: skip
            if c % 3:  # two changes in three know their commit time, each event its own guess (the earliest counts)
                body["committed_at"] = _at(at - timedelta(minutes=37 * (c % 11) + 13 * i + 5))
            if version is not None:
                body["version"] = version
            if kind != "deployment" and i == len(path) - 1:  # its last event names its kind
                body["kind"] = kind
            posted.append(Posted(tokens[2], body))
        if rnd.random() < 0.05:
            moved = {**labels, "cluster": rnd.choice(CLUSTERS)}
            body = {"event_id": f"chg-{seed}-{c}-moved", "change_key": f"chg-{seed}-{c}", "status": "done",
                    "occurred_at": _at(at + timedelta(minutes=20)), "labels": moved}  # fmt: skip
            posted.append(Posted(tokens[2], body))
    sent = 0
    a = 0
    while sent < alert_events:
        token = tokens[a % 2]
        labels = {"service": rnd.choice(FLEET), "cluster": rnd.choice(CLUSTERS), "env": rnd.choice(ENVS)}
        at = start + timedelta(seconds=rnd.randrange(hours * 3600))
        for i in range(rnd.randint(1, 5)):
            action = (
                "open" if i == 0 else rnd.choices(["open", "resolve", "reopen", "heartbeat"], weights=[2, 4, 1, 1])[0]
            )
            body = {"event_id": f"inc-{seed}-{a}-{i}", "external_aggregate_key": f"inc-{seed}-{a}", "action": action,
                    "occurred_at": _at(at), "labels": labels, "severity": rnd.choice(["critical", "high", "low"])}  # fmt: skip
            posted.append(Posted(token, body))
            sent += 1
            at += timedelta(seconds=rnd.randrange(-600, 1800))  # some events predate the ones before them
        a += 1
    return posted


shuffled_with_duplicates = deliveries
