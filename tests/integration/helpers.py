"""Posting many webhooks quickly, and comparing incidents with the batch recomputation."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import aiohttp

from incidentflow.domain.events import AlertEvent
from tests.oracle import recompute_incident
from tests.scenario import NativeAlert


async def _post_all(requests: list[tuple[str, dict[str, Any]]], concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not queue.empty():
                url, body = queue.get_nowait()
                for _ in range(20):  # a sender retries what was not accepted
                    async with session.post(url, json=body) as response:
                        await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 202:
                        break
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def post_all(url: str, bodies: list[dict[str, Any]], concurrency: int = 16) -> dict[int, int]:
    """Posts every body to `url` until it is accepted; returns how many answers of each status came."""
    return asyncio.run(_post_all([(url, body) for body in bodies], concurrency))


def post_each(requests: list[tuple[str, dict[str, Any]]], concurrency: int = 16) -> dict[int, int]:
    """Like `post_all`, with a URL per body."""
    return asyncio.run(_post_all(requests, concurrency))


def expected_incidents(events: list[NativeAlert], integration: str) -> dict[str, dict[str, Any]]:
    """The batch recomputation, as the JSON the incidents topic carries, by aggregate_id."""
    by_key: dict[str, list[AlertEvent]] = {}
    for e in events:
        event = AlertEvent(
            **{k: v for k, v in e.body.items() if k != "occurred_at"},
            occurred_at=datetime.fromisoformat(e.body["occurred_at"]),
            aggregate_id=f"{integration}:{e.key}",
            integration=integration,
            source="native",
            received_at=datetime.fromisoformat(e.body["occurred_at"]),
        )
        by_key.setdefault(event.aggregate_id, []).append(event)
    expected = {}
    for aggregate, evs in by_key.items():
        incident = recompute_incident(evs)
        if incident is not None:
            expected[aggregate] = json.loads(json.dumps(incident, default=_rfc3339))
    return expected


def _rfc3339(value: object) -> str:
    assert isinstance(value, datetime)
    return value.isoformat().replace("+00:00", "Z")


def latest_by_key(records: list[Any]) -> dict[str, dict[str, Any]]:
    return {r.key.decode(): json.loads(r.value) for r in records}


def differences(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """missing / extra aggregates and those whose state differs from the recomputation."""
    return {
        "missing": sorted(set(expected) - set(got))[:5],
        "extra": sorted(set(got) - set(expected))[:5],
        "wrong": [k for k in expected if k in got and got[k] != expected[k]][:5],
        "counts": (len(expected), len(got)),
    }
