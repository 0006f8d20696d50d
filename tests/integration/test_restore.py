"""A worker that lost its disk restores its tables from their changelogs and goes on where the last one stopped."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stack, read_topic

pytestmark = pytest.mark.integration

TOKEN = "it-restore-token-0123456789"
INTEGRATIONS = f"""
integrations:
  - name: ops
    source: native
    token: {TOKEN}
    labels: {{service: api}}
    rate_limit_per_minute: 100000000
"""
INCIDENTS = 300


def post(stack: Stack, events: list[dict[str, object]]) -> None:
    with httpx.Client(timeout=30) as client:
        for event in events:
            answer = client.post(f"{stack.gateway_url}/v1/events/{TOKEN}", json=event)
            assert answer.status_code == 202, answer.text


def alert(n: int, action: str, minute: int) -> dict[str, object]:
    return {"external_aggregate_key": f"k-{n}", "action": action, "severity": "high",
            "occurred_at": f"2026-11-01T12:{minute:02d}:00Z", "event_id": f"{action}-{n}"}  # fmt: skip


def test_a_worker_on_an_empty_disk_restores_every_aggregate_and_folds_on(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    first = stack.start_worker(0)
    post(stack, [alert(n, "open", 0) for n in range(INCIDENTS)])
    incidents = f"{stack.namespace}.incidents"
    opened = read_topic(stack.bootstrap, incidents, lambda r: len({x.key for x in r}) >= INCIDENTS)
    assert len({r.key for r in opened}) == INCIDENTS, stack.logs()[-3000:]
    first.stop()

    # A new worker with a data directory of its own: its aggregates come from the changelog alone.
    stack.start_worker(1)
    post(stack, [alert(n, "resolve", 10) for n in range(INCIDENTS)])

    def resolved(records: list[Any]) -> dict[bytes, dict[str, Any]]:
        last = {r.key: json.loads(r.value) for r in records}
        return {key: value for key, value in last.items() if value["status"] == "resolved"}

    records = read_topic(stack.bootstrap, incidents, lambda r: len(resolved(r)) >= INCIDENTS, timeout=120)
    done = resolved(records)
    assert len(done) == INCIDENTS, stack.logs()[-3000:]
    # Restored, not opened afresh by the resolve (a resolve without an open publishes nothing).
    assert {value["time_to_restore_seconds"] for value in done.values()} == {600.0}
    assert {value["event_count"] for value in done.values()} == {2}
    assert "restored" in stack.logs() and "changelog records" in stack.logs()
