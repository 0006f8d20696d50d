"""Time from worker start to ready with N incidents in its table, next to reading the same changelog raw.

    .venv/bin/python -u bench/startup.py [--incidents 1000000]

Writes N open incidents (the aggregate state the fold would have written, one event each) straight
to the changelog topic of the worker's `aggregates` table, then measures:
  1. baseline: a plain aiokafka consumer reading that changelog from start to end;
  2. cold start: a worker with an empty data directory (it restores the table from the changelog);
  3. warm start: the same worker started again on its RocksDB store (reads only the changelog tail).
"Ready" is the worker's own "Worker ready" log line, after table recovery; the keys of the
restored store are counted once the cold-started worker has stopped.
Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local broker of deploy/kafka on port 39092.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import rocksdict
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import broker, free_port, product_env, spawn, write_result

from incidentflow.config import Settings
from incidentflow.domain.aggregate import AggregateState, apply
from incidentflow.domain.events import AlertEvent
from incidentflow.topics import COMPACTED, ensure_topics

PARTITIONS = 8
TEMPLATE_KEY = "bench:TEMPLATE-KEY"


def template() -> str:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 1, tzinfo=UTC)
    event = AlertEvent(event_id="e-TEMPLATE-KEY", aggregate_id=TEMPLATE_KEY, integration="bench", source="native",
                       external_aggregate_key="TEMPLATE-KEY", action="open", occurred_at=at, received_at=at,
                       severity="high", title="bench alert", labels={"service": "checkout", "cluster": "eu-1"})  # fmt: skip
    return apply(AggregateState(), event).state.model_dump_json()


async def write_changelog(bootstrap: str, topic: str, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=COMPACTED)])
    await admin.close()
    state = template()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=50, max_batch_size=1 << 20)  # fmt: skip
    await producer.start()
    try:
        pending = []
        for i in range(n):
            key = f"i{i}"
            pending.append(await producer.send(topic, key=f"bench:{key}".encode(),
                                               value=state.replace("TEMPLATE-KEY", key).encode()))  # fmt: skip
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> tuple[float, int]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)  # fmt: skip
    start = time.monotonic()
    await consumer.start()
    seen = 0
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()) or [])
        while not ends:
            await asyncio.sleep(0.1)
            ends = await consumer.end_offsets(list(consumer.assignment()))
        total = sum(ends.values())
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=50000)).values():
                seen += len(records)
    finally:
        await consumer.stop()
    return time.monotonic() - start, seen


def time_to_ready(command_env: dict[str, str], work: Path, name: str) -> float:
    log = work / "worker.log"
    log.unlink(missing_ok=True)
    start = time.monotonic()
    worker = spawn("worker", command_env, work)
    try:
        while b"Worker ready" not in (log.read_bytes() if log.exists() else b""):
            if worker.poll() is not None:
                raise SystemExit(f"{name}: the worker exited; see {log}")
            time.sleep(0.1)
        return time.monotonic() - start
    finally:
        worker.terminate()
        worker.wait(timeout=120)


def restored(work: Path) -> int:
    """Keys in the worker's `aggregates` stores (read once it has stopped), Faust's offset keys aside."""
    count = 0
    for path in sorted(work.glob("data/**/aggregates-*.db")):
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                             access_type=rocksdict.AccessType.read_only())  # fmt: skip
        try:
            count += sum(1 for key in db.keys() if not key.startswith(b"__faust"))  # noqa: SIM118  # an Rdict, not a dict
        finally:
            db.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="incidentflow-bench-"))
    with broker(work) as bootstrap:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        asyncio.run(
            ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_namespace=namespace, partitions=PARTITIONS))
        )
        changelog = f"{namespace}-app-aggregates-changelog"
        started = time.monotonic()
        asyncio.run(write_changelog(bootstrap, changelog, args.incidents))
        print(f"wrote {args.incidents} incident states to {changelog} in {time.monotonic() - started:.0f} s")
        seconds, seen = asyncio.run(read_all(bootstrap, changelog))
        print(f"baseline: aiokafka reads the changelog ({seen} records):    {seconds:7.1f} s")
        env = product_env(
            bootstrap, namespace, work, INCIDENTFLOW_WEB_PORT=str(free_port()), INCIDENTFLOW_LOG_LEVEL="info"
        )
        cold = time_to_ready(env, work, "cold")
        kept = restored(work)
        print(
            f"worker start to ready, empty data directory (restore):   {cold:7.1f} s   "
            f"({kept} incidents in its store after it stopped)"
        )
        warm = time_to_ready(env, work, "warm")
        print(f"worker start to ready, its RocksDB store on disk:         {warm:7.1f} s")
    write_result("startup", {"incidents": args.incidents, "aiokafka_read_seconds": seconds, "cold_start_seconds": cold,
                             "restored_incidents": kept, "warm_start_seconds": warm})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
