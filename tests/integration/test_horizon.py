"""The state horizon through a real worker: past it an aggregate and a change are closed in every
table that kept them, their figures stay, and an event beyond it is dead-lettered as `too_late`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.integration.conftest import Stack, read_topic, scrape
from tests.integration.helpers import latest_by_key
from tests.integration.test_poison import produce

pytestmark = pytest.mark.integration


def alert(key: str, action: str, at: str, event_id: str | None = None) -> tuple[bytes, bytes]:
    aggregate_id = f"producer:{key}"
    return aggregate_id.encode(), json.dumps({
        "event_id": event_id or f"{key}-{action}-{at}", "aggregate_id": aggregate_id, "integration": "producer",
        "source": "prometheus", "external_aggregate_key": key, "action": action, "occurred_at": at,
        "received_at": at, "severity": "high", "labels": {"service": "db", "env": "prod"},
    }).encode()  # fmt: skip


def change(key: str, at: str) -> tuple[bytes, bytes]:
    change_id = f"ship:{key}"
    return change_id.encode(), json.dumps({
        "event_id": f"{key}-{at}", "change_id": change_id, "integration": "ship", "source": "native",
        "status": "done", "occurred_at": at, "received_at": at, "labels": {"service": "db", "env": "prod"},
    }).encode()  # fmt: skip


def changelog(stack: Stack, table: str, until: Any) -> dict[bytes, bytes | None]:
    """The last value of each key of a table's changelog (None: deleted)."""
    records = read_topic(stack.bootstrap, f"{stack.namespace}-app-{table}-changelog",
                         lambda r: until({x.key: x.value for x in r}), timeout=90)  # fmt: skip
    return {r.key: r.value for r in records}


def test_past_the_horizon_state_is_closed_figures_stay_and_a_later_event_is_too_late(stack_factory: Any) -> None:
    stack: Stack = stack_factory("integrations: []\n", partitions=1)
    worker = stack.start_worker(INCIDENTFLOW_STATE_HORIZON_DAYS="1")
    names = f"{stack.namespace}"
    asyncio.run(produce(stack.bootstrap, f"{names}.changes", [change("deploy-1", "2026-11-01T11:55:00Z")]))
    asyncio.run(produce(stack.bootstrap, f"{names}.alerts", [alert("db-1", "open", "2026-11-01T12:00:00Z"),
                                                             alert("db-1", "resolve", "2026-11-01T12:30:00Z")]))  # fmt: skip
    read_topic(stack.bootstrap, f"{names}.correlations", lambda r: len(r) >= 1, timeout=90)
    rows = read_topic(stack.bootstrap, f"{names}.metrics",
                      lambda r: latest_by_key(r).get("recovery|db|prod|-|2026-11-01", {}).get("count") == 1, timeout=90)  # fmt: skip
    assert latest_by_key(rows)["mttr|db|prod|high|2026-11-01"]["count"] == 1, stack.logs()[-3000:]
    time.sleep(2)  # the recovery reached the change fold: nothing of deploy-1 can change any more
    # Two days later (the clocks of both folds move on): db-1 and deploy-1 are past their horizon.
    asyncio.run(produce(stack.bootstrap, f"{names}.changes", [change("deploy-2", "2026-11-03T08:00:00Z")]))
    asyncio.run(produce(stack.bootstrap, f"{names}.alerts", [alert("db-2", "open", "2026-11-03T08:00:00Z")]))
    aggregates = changelog(stack, "aggregates", lambda s: s.get(b"producer:db-1") == b'{"closed":true}')
    assert aggregates[b"producer:db-1"] == b'{"closed":true}', stack.logs()[-3000:]
    suspects = changelog(stack, "correlation-suspects", lambda s: b"producer:db-1" in s and s[b"producer:db-1"] is None)
    assert suspects[b"producer:db-1"] is None
    scope = changelog(stack, "correlation-scope", lambda s: s.get(b"service=db|i|producer:db-1", b"") is None
                      and s.get(b"service=db|c|ship:deploy-1", b"") is None)  # fmt: skip
    assert scope[b"service=db|i|producer:db-1"] is None and scope[b"service=db|c|ship:deploy-1"] is None
    changes = changelog(stack, "changes", lambda s: b"ship:deploy-1" in s and s[b"ship:deploy-1"] is None)
    assert changes[b"ship:deploy-1"] is None
    members = changelog(stack, "series-members", lambda s: s.get(b"mttr|db|prod|high|producer:db-1", b"") is None)
    assert members[b"mttr|db|prod|high|producer:db-1"] is None
    # A late resolve of db-1, and an open of a day beyond the horizon: too late; one of the day inside it: folded.
    asyncio.run(produce(stack.bootstrap, f"{names}.alerts", [alert("db-1", "resolve", "2026-11-01T12:40:00Z", "late"),
                                                             alert("db-3", "open", "2026-11-01T23:00:00Z"),
                                                             alert("db-4", "open", "2026-11-02T00:10:00Z")]))  # fmt: skip
    dead = read_topic(stack.bootstrap, f"{names}.deadletter", lambda r: len(r) >= 2)
    assert sorted((json.loads(d.value)["reason"], json.loads(d.value)["key"]) for d in dead) == [
        ("too_late", "producer:db-1"), ("too_late", "producer:db-3")]  # fmt: skip
    incidents = latest_by_key(
        read_topic(stack.bootstrap, f"{names}.incidents", lambda r: "producer:db-4" in latest_by_key(r))
    )
    assert "producer:db-4" in incidents and "producer:db-3" not in incidents
    assert incidents["producer:db-1"]["status"] == "resolved"  # the incident record stays
    samples = scrape(f"http://127.0.0.1:{stack.worker_ports[0]}/metrics")
    too_late = [
        v
        for k, v in samples.items()
        if k.startswith("incidentflow_events_processed_total") and 'outcome="too_late"' in k
    ]
    assert sum(too_late) == 2, stack.logs()[-3000:]
    # The daily figures stay.
    rows = latest_by_key(read_topic(stack.bootstrap, f"{names}.metrics", lambda r: len(r) >= 3))
    assert rows["mttr|db|prod|high|2026-11-01"]["count"] == 1 and rows["changes|db|prod|-|2026-11-01"]["changes"] == 1
    assert worker.popen.poll() is None
