"""Correlation throughput and delay, next to the incident fold alone, through the gateway and one worker.

    .venv/bin/python bench/correlation.py [--pairs 2000] [--rate 20] [--seconds 30]

1. Fold alone: `2 x pairs` alert events that carry no scope label (nothing to correlate) are
   posted as fast as the gateway takes them; the rate is events per second until every incident
   is on `incidentflow.incidents`.
2. Correlation: `pairs` incidents and `pairs` changes that correlate one to one (same service,
   change 10 minutes before the open) are posted in shuffled order; the rate is events per second
   until every correlation is on `incidentflow.correlations`.
3. Delay: pairs are posted at a steady `rate` per second (change and incident in random order);
   the delay is from the later of the two 202 answers to the Kafka timestamp of the pair's
   correlation record; p50 and p99 are printed.

Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local broker of deploy/kafka on port 39092.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer
from common import broker, free_port, product_env, spawn, write_result

from incidentflow.config import Settings
from incidentflow.topics import ensure_topics

PARTITIONS = 8
ALERTS, CHANGES = "bench-alerts-token-0123456789", "bench-changes-token-0123456789"
INTEGRATIONS = f"""integrations:
  - {{name: alerts, source: native, token: {ALERTS}, rate_limit_per_minute: 100000000}}
  - {{name: changes, source: native, token: {CHANGES}, rate_limit_per_minute: 100000000}}
"""
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _at(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def pair(run: str, i: int) -> list[tuple[str, dict[str, Any]]]:
    """An incident and the change that correlates with it (a service of their own)."""
    opened = T0 + timedelta(seconds=i)
    labels = {"service": f"{run}-svc-{i}", "env": "prod"}
    return [
        (ALERTS, {"event_id": f"{run}-i{i}", "external_aggregate_key": f"{run}-i{i}", "action": "open",
                  "occurred_at": _at(opened), "labels": labels}),
        (CHANGES, {"event_id": f"{run}-c{i}", "change_key": f"{run}-c{i}", "status": "done",
                   "occurred_at": _at(opened - timedelta(minutes=10)), "labels": labels}),
    ]  # fmt: skip


def lone_alerts(run: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [(ALERTS, {"event_id": f"{run}-a{i}", "external_aggregate_key": f"{run}-a{i}", "action": "open",
                      "occurred_at": _at(T0 + timedelta(seconds=i)), "labels": {"team": "bench"}})
            for i in range(n)]  # fmt: skip


async def post(url: str, requests: list[tuple[str, dict[str, Any]]], concurrency: int = 16) -> dict[str, float]:
    """Posts every request (retrying until 202); returns the time of each 202 by event_id."""
    accepted: dict[str, float] = {}
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not queue.empty():
                token, body = queue.get_nowait()
                while True:
                    async with session.post(f"{url}/v1/events/{token}", json=body) as response:
                        await response.read()
                    if response.status == 202:
                        accepted[body["event_id"]] = time.time()
                        break
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted


async def count_keys(
    bootstrap: str, topic: str, wanted: int, prefix: bytes = b"", timeout: float = 900
) -> tuple[float, list[Any]]:
    """Reads `topic` until it holds `wanted` distinct keys starting with `prefix`; returns when, and those records."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    keys: set[bytes] = set()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(keys) < wanted and time.monotonic() < deadline:
            for items in (await consumer.getmany(timeout_ms=200)).values():
                mine = [r for r in items if r.key.startswith(prefix)]
                records.extend(mine)
                keys.update(r.key for r in mine)
    finally:
        await consumer.stop()
    if len(keys) < wanted:
        raise SystemExit(f"{topic}: only {len(keys)} of {wanted} keys after {timeout}s")
    return time.time(), records


async def rate_of(
    bootstrap: str, gateway: str, topic: str, requests: list[tuple[str, dict[str, Any]]], wanted: int
) -> float:
    start = time.time()
    waiting = asyncio.create_task(count_keys(bootstrap, topic, wanted))
    await post(gateway, requests)
    done, _ = await waiting
    return len(requests) / (done - start)


async def delays(bootstrap: str, gateway: str, run: str, rate: float, seconds: float) -> list[float]:
    n = int(rate * seconds)
    waiting = asyncio.create_task(count_keys(bootstrap, f"{run}.correlations", n, prefix=b"alerts:paced-"))
    accepted: dict[str, float] = {}
    rnd = random.Random(7)
    start = time.monotonic()
    tasks = []
    for i in range(n):
        requests = pair("paced", i)
        rnd.shuffle(requests)
        tasks.append(asyncio.create_task(post(gateway, requests, concurrency=1)))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    for result in await asyncio.gather(*tasks):
        accepted.update(result)
    _, records = await waiting
    first: dict[str, float] = {}
    for record in records:
        value = json.loads(record.value)
        first.setdefault(value["aggregate_id"], record.timestamp / 1000)
    result = []
    for aggregate_id, at in first.items():
        i = aggregate_id.rsplit("-i", 1)[1]
        result.append(at - max(accepted[f"paced-i{i}"], accepted[f"paced-c{i}"]))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="pairs per second in the delay phase")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="incidentflow-bench-"))
    with broker(work) as bootstrap:
        return run(args, work, bootstrap)


def run(args: argparse.Namespace, work: Path, bootstrap: str) -> int:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    (work / "integrations.yaml").write_text(INTEGRATIONS)
    web_port, gateway_port = free_port(), free_port()
    env = product_env(bootstrap, namespace, work, INCIDENTFLOW_WEB_PORT=str(web_port),
                      INCIDENTFLOW_GATEWAY_PORT=str(gateway_port),
                      INCIDENTFLOW_INTEGRATIONS_FILE=str(work / "integrations.yaml"))  # fmt: skip
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_namespace=namespace, partitions=PARTITIONS)))
    processes = []
    try:
        processes = [spawn(command, env, work) for command in ("gateway", "worker")]
        gateway = f"http://127.0.0.1:{gateway_port}"
        for url in (f"{gateway}/healthz", f"http://127.0.0.1:{web_port}/metrics"):
            for _ in range(300):
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        time.sleep(3)  # the worker's first rebalance

        requests = [r for i in range(args.pairs) for r in pair("load", i)]
        random.Random(1).shuffle(requests)
        fold = asyncio.run(rate_of(bootstrap, gateway, f"{namespace}.incidents", lone_alerts("lone", 2 * args.pairs),
                                   2 * args.pairs))  # fmt: skip
        print(f"incident fold alone (gateway -> worker):   {fold:8.0f} events/s  ({2 * args.pairs} alert events)")
        correlated = asyncio.run(rate_of(bootstrap, gateway, f"{namespace}.correlations", requests, args.pairs))
        print(f"fold + correlation (gateway -> worker):    {correlated:8.0f} events/s  "
              f"({args.pairs} incidents and {args.pairs} changes, one correlation each)")  # fmt: skip
        print(f"ratio correlation/fold alone: {correlated / fold:.2f}")
        found = asyncio.run(delays(bootstrap, gateway, namespace, args.rate, args.seconds))
        cuts = statistics.quantiles(found, n=100)
        print(f"delay from the second event's 202 to its correlation record at {args.rate:.0f} pairs/s "
              f"({len(found)} pairs): p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms, "
              f"max {max(found) * 1000:.0f} ms")  # fmt: skip
        write_result("correlation", {"pairs": args.pairs, "rate": args.rate, "seconds": args.seconds,
                                     "fold_rate": fold, "correlated_rate": correlated, "ratio": correlated / fold,
                                     "delay_ms": {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000,
                                                  "max": max(found) * 1000, "pairs": len(found)}})  # fmt: skip
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
