"""A simulated year through one worker: the size of its state at the end of every month, then a cold restore.

    .venv/bin/python -u bench/state_growth.py [--events 2000000] [--days 365] [--leave-open]

The trust suite's traffic (`tests/trust/traffic.py`: native, Flashduty, Uptrends and Sleuth
alerts, native and Flashduty changes, with reopens, heartbeats, late and duplicate events, changes
that do and do not correlate), in seeded slices whose event times cover `--days` days, written as
canonical events straight to the worker's `alerts` and `changes` topics (Elven, whose events take
their time from the gateway's receipt, is left out). A slice ends with about two thirds of its
incidents open; here each of those is resolved between an hour and two days after its last event
(`--leave-open` keeps them open for ever, and with them their state: the horizon counts from an
incident's final resolution). Month by month of event time: the month's
events are produced, the worker drains every stage, and the state is measured: the live keys and
their bytes per table (read from each table's changelog, the last value of each key, tombstones
left out: what a restore loads) and the worker's RocksDB directory on disk. At the end, the
worker is stopped, its data directory removed, and the time until a new worker is ready (it
restores every table) is measured next to a plain read of the same changelogs, with the worker's
resident memory after.
Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local broker of deploy/kafka on port 39092.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from common import REPO, broker, free_port, product_env, spawn, write_result
from startup import time_to_ready

sys.path.insert(0, str(REPO))
from tests.trust.traffic import START, generate, integrations_yaml, span_days  # noqa: E402

from incidentflow.config import Settings  # noqa: E402
from incidentflow.domain.events import AlertEvent, ChangeEvent  # noqa: E402
from incidentflow.domain.incident import project  # noqa: E402
from incidentflow.runtime.progress import group_lag  # noqa: E402
from incidentflow.stream.app import TABLES  # noqa: E402
from incidentflow.topics import COMPACTED, Topics, changelog_topic, ensure_topics  # noqa: E402

PARTITIONS = 8
MONTH = timedelta(days=365 / 12)


class Year:
    """About `events` canonical events over `days` days: slices of the trust generator, each over
    `span_days(SLICE)` days, started every few days so that they overlap to the density asked for.
    `until(t)` gives, in event-time order, every event before `t` not given yet (a slice is
    shuffled within itself, as the trust traffic is, so events still arrive late and out of order)."""

    SLICE = 9000

    def __init__(self, events: int, days: int, leave_open: bool = False) -> None:
        self.step = self.SLICE / (events / days)  # days between slice starts
        self.days, self.seed, self.start, self.leave_open = days, 1000, 0.0, leave_open
        self.pending: list[tuple[float, str, bytes, bytes]] = []
        self.made = 0

    def until(self, t: float) -> list[tuple[float, str, bytes, bytes]]:
        while self.start < self.days and (START + timedelta(days=self.start)).timestamp() < t:
            alerts: dict[str, list[AlertEvent]] = {}
            for webhook in generate(self.seed, self.SLICE, START + timedelta(days=self.start)):
                for event in webhook.events:
                    if isinstance(event, AlertEvent):
                        alerts.setdefault(event.aggregate_id, []).append(event)
                    elif isinstance(event, ChangeEvent):
                        self.pending.append((event.occurred_at.timestamp(), "changes", event.change_id.encode(),
                                             event.model_dump_json().encode()))  # fmt: skip
            rnd = random.Random(self.seed)
            for events in alerts.values():
                if not self.leave_open:
                    events.extend(resolution(events, rnd))
                for event in events:
                    self.pending.append((event.occurred_at.timestamp(), "alerts", event.aggregate_id.encode(),
                                         event.model_dump_json().encode()))  # fmt: skip
            self.seed, self.start = self.seed + 1, self.start + self.step
        self.pending.sort(key=lambda item: item[0])
        cut = next((i for i, item in enumerate(self.pending) if item[0] >= t), len(self.pending))
        out, self.pending = self.pending[:cut], self.pending[cut:]
        self.made += len(out)
        return out


def resolution(events: list[AlertEvent], rnd: random.Random) -> list[AlertEvent]:
    """A resolve between an hour and two days after the last event of an incident its slice leaves
    open (none for one it leaves resolved): the trust traffic ends each slice with about two thirds
    of its incidents open, which over a year would be hundreds of thousands open at once."""
    incident = project(events)
    if incident is None or incident.status == "resolved":
        return []
    last = max(events, key=lambda e: e.occurred_at)
    at = last.occurred_at + timedelta(seconds=rnd.randrange(3600, 2 * 86400))
    update = {"event_id": f"{last.aggregate_id}:resolved-in-bench", "action": "resolve", "occurred_at": at,
              "received_at": at}  # fmt: skip
    return [AlertEvent.model_validate({**last.model_dump(), **update})]


async def changelogs_compacted_as_over_a_year(settings: Settings) -> None:
    """Creates the worker's changelogs, each segment rolled after a minute rather than an hour: the
    year passes in about an hour here, and the broker compacts only rolled segments, so with the
    product's hourly segments the changelogs would still hold most of the year's writes at its end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        config = {**COMPACTED, "segment.ms": "60000"}
        await admin.create_topics([NewTopic(changelog_topic(settings, t), settings.partitions, 1, topic_configs=config)
                                   for t in TABLES])  # fmt: skip
    finally:
        await admin.close()


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=262144)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def drained(bootstrap: str, group: str, topics: list[str]) -> None:
    """Returns once the worker has committed every record of every topic it reads, twice in a row."""
    calm = 0
    while calm < 2:
        try:
            lag = await group_lag(bootstrap, group, topics)
        except KafkaError:  # the group's coordinator is not there yet (a broker just started)
            calm = 0
        else:
            calm = calm + 1 if lag.behind == 0 else 0
        await asyncio.sleep(1.0)


async def live_state(bootstrap: str, namespace: str) -> dict[str, tuple[int, int]]:
    """table -> (live keys, bytes of their keys and values), from the last value of each key of its changelog."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([f"{namespace}-app-{t}-changelog" for t in TABLES])
    finally:
        await admin.close()
    out: dict[str, tuple[int, int]] = {}
    for topic in described:
        name = topic["topic"].removeprefix(f"{namespace}-app-").removesuffix("-changelog")
        partitions = [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
        latest: dict[tuple[int, bytes], int] = {}
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
                for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=20000)).items():
                    for record in batch:
                        key = (tp.partition, record.key or b"")
                        if record.value is None:
                            latest.pop(key, None)
                        else:
                            latest[key] = len(key[1]) + len(record.value)
        finally:
            await consumer.stop()
        out[name] = (len(latest), sum(latest.values()))
    return out


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--leave-open", action="store_true",
                        help="keep the incidents each slice leaves open open for ever (the trust traffic as it is)")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="incidentflow-bench-"))
    with broker(work) as bootstrap:
        return run(args, work, bootstrap)


def run(args: argparse.Namespace, work: Path, bootstrap: str) -> int:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    settings = Settings(kafka_bootstrap=bootstrap, topic_namespace=namespace, partitions=PARTITIONS,
                        app_id=f"{namespace}-app")  # fmt: skip
    names = Topics.of(settings)
    asyncio.run(changelogs_compacted_as_over_a_year(settings))
    asyncio.run(ensure_topics(settings, tables=TABLES))
    (work / "integrations.yaml").write_text(integrations_yaml())
    traffic = Year(args.events, args.days, args.leave_open)
    print(f"about {args.events} canonical events over {args.days} days of event time, from {START.date()}, "
          f"in slices of the trust traffic ({span_days(Year.SLICE)} days each, one every {traffic.step:.1f} days)")  # fmt: skip
    env = product_env(bootstrap, namespace, work, INCIDENTFLOW_WEB_PORT=str(free_port()),
                      INCIDENTFLOW_INTEGRATIONS_FILE=str(work / "integrations.yaml"), INCIDENTFLOW_LOG_LEVEL="info")  # fmt: skip
    inputs = [names.alerts, names.changes, names.contributions, names.scope, names.suspects, names.verdicts,
              names.history, names.history_verdicts]  # fmt: skip
    group = f"{namespace}-app"
    worker: subprocess.Popen[bytes] | None = spawn("worker", env, work)
    first = START.timestamp()
    print(f"state horizon: {settings.state_horizon_days} days of event time")
    print("month  events so far  live keys  live MiB  RocksDB on disk  per table: live keys / MiB")
    totals: dict[int, tuple[int, int]] = {}
    months: list[dict[str, object]] = []
    try:
        for month in range(1, 13):
            until = first + month * MONTH.total_seconds() if month < 12 else float("inf")
            batch = [(names.alerts if kind == "alerts" else names.changes, key, value)
                     for _, kind, key, value in traffic.until(until)]  # fmt: skip
            asyncio.run(produce(bootstrap, batch))
            asyncio.run(drained(bootstrap, group, inputs))
            read_from = time.monotonic()
            state = asyncio.run(live_state(bootstrap, namespace))
            read = time.monotonic() - read_from
            keys, size = sum(k for k, _ in state.values()), sum(b for _, b in state.values())
            totals[month] = (keys, size)
            tables = ", ".join(f"{t} {state[t][0]} / {state[t][1] / 2**20:.1f}" for t in TABLES if state[t][0])
            disk = disk_bytes(work / "data")
            print(f"{month:>5}  {traffic.made:>13}  {keys:>9}  {size / 2**20:>8.1f}  "
                  f"{disk / 2**20:>11.0f} MiB  {tables}")  # fmt: skip
            months.append({"month": month, "events": traffic.made, "live_keys": keys, "live_bytes": size,
                           "disk_bytes": disk, "tables": {t: list(state[t]) for t in TABLES}})  # fmt: skip
        (keys4, size4), (keys12, size12) = totals[4], totals[12]
        print(f"state after month 12 against month 4: {keys12 / keys4:.2f}x the keys, {size12 / size4:.2f}x the bytes")
        print(f"baseline: aiokafka reads every table's changelog to its end: {read:.1f} s")
        resident = rss_mib(worker.pid)
        worker.terminate()
        worker.wait(timeout=120)
        worker = None
        print(f"worker RSS at the end of the year: {resident:.0f} MiB")
        shutil.rmtree(work / "data")
        cold = time_to_ready(env, work, "cold")
        print(f"worker start to ready, empty data directory (restores every table): {cold:.1f} s")
        write_result("state-growth-open" if args.leave_open else "state-growth",
                     {"events": traffic.made, "days": args.days, "horizon_days": settings.state_horizon_days,
                      "months": months, "keys_12_to_4": keys12 / keys4, "bytes_12_to_4": size12 / size4,
                      "aiokafka_read_seconds": read, "cold_restore_seconds": cold, "rss_mib": resident})  # fmt: skip
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
