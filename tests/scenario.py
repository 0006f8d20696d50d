"""A seeded, deterministic generator of realistic alert histories, and the deliveries of them.

Deliveries are what a sender would do to the gateway: every event at least once, some twice or
more (retries), in shuffled order (late and out-of-order webhooks).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


def deliveries(events: list[NativeAlert], seed: int, duplicate_rate: float = 0.1) -> list[NativeAlert]:
    """Every event once, a share of them again, all in shuffled order."""
    rnd = random.Random(seed)
    delivered = list(events) + [e for e in events if rnd.random() < duplicate_rate]
    rnd.shuffle(delivered)
    return delivered
