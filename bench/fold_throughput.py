"""Events folded per second by one worker, next to raw aiokafka consume-then-produce on the same broker.

    .venv/bin/python bench/fold_throughput.py [--events 100000] [--aggregates 20000] [--rounds 3] [--profile FILE]

Both read the same canonical alert records from a topic of 8 partitions. The baseline consumes
each record and produces it to another topic (acks=all), committing as it goes: the least any
stream processor must do. A second baseline does the same through one Faust agent
(`bench/faust_passthrough.py`, batches as the worker takes them): Faust's own cost per record, a
ceiling for anything built on it. The worker (`incidentflow worker`, RocksDB store) folds each record
into its aggregate, writes the table changelog, publishes the changed incident and its metric
contributions and correlation sides, and folds those into the metric series and the correlation
scope. Rates are measured from the first committed record to the last committed record of the
input (the fold), and to the moment every stage has committed its input (the whole worker: the
series and correlation stages read what the fold wrote, on the same core), so start-up is not
counted. Then it folds 100,000 aggregates that stay
open and reports the worker's resident memory before and after.
Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local broker of deploy/kafka on port 39092.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import broker, commit_of, free_port, product_env, spawn, write_result

from incidentflow.config import Settings
from incidentflow.runtime.progress import LagReader
from incidentflow.topics import Topics, ensure_topics

PARTITIONS = 8


SERVICES = ("checkout", "payments", "search")


def alert_records(
    n: int, aggregates: int, namespace: str, seed: int, all_open: bool = False, relabel: bool = False
) -> list[tuple[bytes, bytes]]:
    """Alerts over `aggregates` aggregates in random order, each aggregate with its own service
    (`relabel`: a random service on every event, so that nearly every event moves its incident
    between services, metric series and scope buckets)."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    records = []
    for i in range(n):
        number = rnd.randrange(aggregates) if not all_open else i
        agg = f"bench:{namespace}-{number}"
        service = rnd.choice(SERVICES) if relabel else SERVICES[number % len(SERVICES)]
        action = "open" if all_open else rnd.choice(["open", "resolve", "open", "resolve", "heartbeat"])
        at = (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        record = {
            "event_id": f"e{seed}-{i}", "aggregate_id": agg, "integration": "bench", "source": "native",
            "external_aggregate_key": agg.split(":", 1)[1], "action": action, "occurred_at": at, "received_at": at,
            "severity": rnd.choice(["critical", "high", "low"]), "title": "bench alert",
            "labels": {"service": service, "cluster": "eu-1"},
        }  # fmt: skip
        records.append((agg.encode(), json.dumps(record).encode()))
    return records


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=262144)
    await producer.start()
    try:
        batch = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def passthrough(bootstrap: str, source: str, sink: str, expected: int) -> float:
    """Consume every record and produce it onward, committing; returns records per second."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(sink, PARTITIONS, 1)])
    await admin.close()
    group = f"bench-pass-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=1000)  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    seen = 0
    first = last = 0.0
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            futures = []
            for records in batch.values():
                for r in records:
                    futures.append(await producer.send(sink, value=r.value, key=r.key))
            if futures:
                first = first or time.monotonic()
                await asyncio.gather(*futures)
                await consumer.commit()
                seen += len(futures)
                last = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()
    return seen / (last - first)


async def records_written(bootstrap: str, namespace: str, exclude: set[str]) -> int:
    """Records on every topic of this run (outputs, internal topics, table changelogs) but `exclude`,
    read once they stop growing: what the worker wrote for its input."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(namespace) and t not in exclude]
        described = await admin.describe_topics(topics)
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 3.0:
            total = sum((await consumer.end_offsets(partitions)).values())
            if total != last:
                last, stable_since = total, time.monotonic()
            await asyncio.sleep(0.5)
        return last
    finally:
        await consumer.stop()
        await admin.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def faust_passthrough(bootstrap: str, source: str, sink: str, work: Path) -> float:
    """Records per second of `bench/faust_passthrough.py` (one Faust agent forwarding each record)
    over the whole topic, from its first committed record to its last."""
    group = f"{sink}-group"
    asyncio.run(_create(bootstrap, sink))
    env = {**os.environ, "FLOOR_BOOTSTRAP": bootstrap, "FLOOR_SOURCE": source, "FLOOR_SINK": sink,
           "FLOOR_GROUP": group, "FLOOR_DATA_DIR": str(work / "floor-data"), "FLOOR_WEB_PORT": str(free_port())}  # fmt: skip
    with (work / "faust-passthrough.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("faust_passthrough.py")), "worker",
                                    "-l", "warn"], env=env, stdout=log, stderr=log)  # fmt: skip
    try:
        rate, _, _, _ = asyncio.run(wait_folded(bootstrap, group, source, [], process))
        return rate
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


def profile(pid: int, into: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker (all threads, idle included) until interrupted."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "100", "--idle", "--format", "raw",
                             "-o", str(into)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_folded(
    bootstrap: str, group: str, topic: str, stages: list[str], process: subprocess.Popen[bytes]
) -> tuple[float, int, float, float]:
    """Poll the worker's committed offsets until it has caught up with `topic` and then with every
    topic in `stages` (what its own agents write and read again: metric contributions, correlation
    sides). Returns (records of `topic` per second until it was committed, records, records of
    `topic` per second until every stage was committed, the worker's CPU seconds over that time):
    the first is the fold, the second the whole worker. The CPU time is the steadier figure on a
    shared machine: it does not count what other processes take. Stops the run if the process exits."""
    async with LagReader(bootstrap) as reader:
        return await _wait_folded(reader, group, topic, stages, process)


POLL_SECONDS = 0.2
"""Between two reads of the group's offsets (each over clients kept open: a few milliseconds)."""


async def _wait_folded(
    reader: LagReader, group: str, topic: str, stages: list[str], process: subprocess.Popen[bytes]
) -> tuple[float, int, float, float]:
    pid = process.pid
    first = last = 0.0
    cpu_at_first = 0.0
    done = 0
    folded = None
    drained_polls = 0
    drained_at = cpu_at_drained = 0.0
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited ({process.returncode}) before it was done: see its log")
        lag = await reader.lag(group, [topic, *stages])
        if lag.done[topic] and not first:
            first, cpu_at_first = time.monotonic(), cpu_seconds(pid)
        if lag.done[topic] > done:
            done, last = lag.done[topic], time.monotonic()
        if folded is None and lag.total[topic] and lag.done[topic] == lag.total[topic]:
            folded = done / (last - first) if last > first else float("nan")
        if folded is not None:
            # Each stage commits its input only once what it wrote is in Kafka, so nothing behind,
            # twice in a row, is the end of every stage's work: at the first of the two polls (as the
            # fold's end is the poll that first saw its last commit).
            if lag.behind == 0:
                drained_polls += 1
                if drained_polls == 1:
                    drained_at, cpu_at_drained = time.monotonic(), cpu_seconds(pid)
            else:
                drained_polls = 0
            if drained_polls == 2:
                return folded, done, done / (drained_at - first), cpu_at_drained - cpu_at_first
        await asyncio.sleep(POLL_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--aggregates", type=int, default=20_000)
    parser.add_argument("--open-incidents", type=int, default=100_000)
    parser.add_argument(
        "--profile", type=Path, help="py-spy's raw profile of the worker over every stage, into this file"
    )
    parser.add_argument(
        "--relabel", action="store_true",
        help="a random service on every event (every event moves its incident between series and scope buckets)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="run the three consumers this many times, each over a topic of its own, and print the medians",
    )  # fmt: skip
    parser.add_argument(
        "--against", type=Path, metavar="SRC",
        help="another version's source tree (a worktree's src/): in each round its worker folds the same "
             "records after or before this one, and both are compared with the same Faust pass-through",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="where the figures go (default bench/results/fold.json)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="incidentflow-bench-"))
    with broker(work) as bootstrap:
        return run(args, work, bootstrap)


def run(args: argparse.Namespace, work: Path, bootstrap: str) -> int:
    rounds = []
    for number in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"--- round {number} of {args.rounds}")
        rounds.append(one_round(args, work / f"round-{number}", bootstrap, number, last=number == args.rounds))
    median = statistics.median
    medians = {
        "aiokafka_rate": median([r.base for r in rounds]),
        "faust_rate": median([r.floor for r in rounds]),
        "fold_rate": median([r.rate for r in rounds]),
        "every_stage_rate": median([r.drained for r in rounds]),
        "fold_ratio_to_faust": median([r.rate / r.floor for r in rounds]),
        "every_stage_ratio_to_faust": median([r.drained / r.floor for r in rounds]),
        "every_stage_ratio_to_aiokafka": median([r.drained / r.base for r in rounds]),
        "cpu_us_per_record": median([r.cpu_per_record for r in rounds]) * 1e6,
        "written_per_input": median([r.written_per_input for r in rounds]),
    }
    against = [r.against for r in rounds if r.against is not None]
    if against:
        medians["against_every_stage_rate"] = median([a["drained"] for a in against])
        medians["against_every_stage_ratio_to_faust"] = median(
            [r.against["drained"] / r.floor for r in rounds if r.against is not None]
        )
        medians["against_cpu_us_per_record"] = median([a["cpu_per_record"] for a in against]) * 1e6
    if args.rounds > 1:
        print(f"--- median of {args.rounds} rounds (each ratio taken within its round)")
        print(
            f"every stage of the worker done (series, correlation): {medians['every_stage_rate']:9.0f} records/s   "
            f"ratio {medians['every_stage_ratio_to_aiokafka']:.2f} (aiokafka), "
            f"{medians['every_stage_ratio_to_faust']:.2f} (Faust)"
        )
        print(f"worker CPU per input record, every stage: {medians['cpu_us_per_record']:.0f} µs")
        if against:
            print(f"the worker of {args.against}: every stage {medians['against_every_stage_rate']:.0f} records/s, "
                  f"ratio {medians['against_every_stage_ratio_to_faust']:.2f} (Faust), "
                  f"{medians['against_cpu_us_per_record']:.0f} µs per input record")  # fmt: skip
    name = ("fold-relabel" if args.relabel else "fold") + ("-against" if args.against else "")
    write_result(name, {"events": args.events, "aggregates": args.aggregates, "rounds": [asdict(r) for r in rounds],
                        "medians": medians, "memory": rounds[-1].memory,
                        "against": commit_of(args.against) or str(args.against) if args.against else None},
                 args.out)  # fmt: skip
    return 0


@dataclass(frozen=True)
class Round:
    base: float
    floor: float
    rate: float
    drained: float
    cpu_per_record: float
    written_per_input: float
    memory: dict[str, float] | None = None
    against: dict[str, float] | None = None
    """The worker of `--against` in the same round: its every-stage rate and CPU per input record."""


def other_worker(
    args: argparse.Namespace, work: Path, bootstrap: str, records: list[tuple[bytes, bytes]]
) -> dict[str, float]:
    """The worker of another version's source tree (`--against`) over the same records, on a namespace of its own."""
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    settings = Settings(kafka_bootstrap=bootstrap, topic_namespace=namespace, partitions=PARTITIONS)
    asyncio.run(ensure_topics(settings))
    alerts = f"{namespace}.alerts"
    asyncio.run(produce(bootstrap, alerts, records))
    env = product_env(bootstrap, namespace, work, INCIDENTFLOW_WEB_PORT=str(free_port()), PYTHONPATH=str(args.against),
                      INCIDENTFLOW_DATA_DIR=str(work / "data-against"))  # fmt: skip
    worker = spawn("worker", env, work, log="worker-against")
    try:
        _, folded, drained, cpu = asyncio.run(
            wait_folded(bootstrap, f"{namespace}-app", alerts, stage_topics(settings), worker)
        )
    finally:
        stop(worker)
    return {"drained": drained, "cpu_per_record": cpu / folded}


def stage_topics(settings: Settings) -> list[str]:
    """The topics the worker's later stages read (what the fold and they write)."""
    names = Topics.of(settings)
    return [names.contributions, names.scope, names.suspects, names.changes, names.verdicts, names.history,
            names.history_verdicts]  # fmt: skip


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:  # a worker that cannot stop cleanly (its broker gone) is not left behind
        worker.kill()
        worker.wait()


def one_round(args: argparse.Namespace, work: Path, bootstrap: str, number: int, last: bool) -> Round:
    """The three consumers over a topic of their own (and the worker of `--against`); with `last`,
    the worker's memory after."""
    work.mkdir(parents=True)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    settings = Settings(kafka_bootstrap=bootstrap, topic_namespace=namespace, partitions=PARTITIONS)
    worker = None
    try:
        asyncio.run(ensure_topics(settings))
        alerts = f"{namespace}.alerts"
        print(f"producing {args.events} alert records over {args.aggregates} aggregates into {alerts} ...")
        records = alert_records(args.events, args.aggregates, namespace, seed=1, relabel=args.relabel)
        asyncio.run(produce(bootstrap, alerts, records))

        base = asyncio.run(passthrough(bootstrap, alerts, f"{namespace}.passthrough", args.events))
        print(f"baseline aiokafka consume->produce (acks=all): {base:9.0f} records/s")
        floor = faust_passthrough(bootstrap, alerts, f"{namespace}.floor", work)
        print(f"baseline Faust agent forwarding each record:   {floor:9.0f} records/s   (Faust's own cost per record)")

        against = None
        if args.against and number % 2 == 0:  # every other round first, so that neither always runs later
            against = other_worker(args, work, bootstrap, records)
        worker = spawn("worker", product_env(bootstrap, namespace, work, INCIDENTFLOW_WEB_PORT=str(free_port())), work)
        profiler = profile(worker.pid, args.profile) if args.profile and last else None
        stages = stage_topics(settings)
        rate, folded, drained, cpu = asyncio.run(wait_folded(bootstrap, f"{namespace}-app", alerts, stages, worker))
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            print(f"profile of the worker (py-spy, raw): {args.profile}")
        print(f"incidentflow worker fold (RocksDB):           {rate:9.0f} records/s   ({folded} records)")
        print(f"ratio fold/baseline: {rate / base:.2f} (aiokafka), {rate / floor:.2f} (Faust)")
        print(
            f"every stage of the worker done (series, correlation): {drained:9.0f} records/s   "
            f"ratio {drained / base:.2f} (aiokafka), {drained / floor:.2f} (Faust)"
        )
        print(f"worker CPU per input record, every stage: {cpu / folded * 1e6:.0f} µs")
        written = asyncio.run(records_written(bootstrap, namespace, {alerts, f"{namespace}.passthrough"}))
        print(f"records the worker wrote per input record: {written / folded:.1f} (the baseline writes 1.0)")

        memory = None
        if last:
            idle = rss_kib(worker.pid)
            print(f"folding {args.open_incidents} incidents that stay open ...")
            more = alert_records(args.open_incidents, 0, namespace + "-open", seed=2, all_open=True)
            asyncio.run(produce(bootstrap, alerts, more))
            asyncio.run(wait_folded(bootstrap, f"{namespace}-app", alerts, stages, worker))
            time.sleep(2)
            after = rss_kib(worker.pid)
            per_100k = (after - idle) / args.open_incidents * 100_000 / 1024
            print(
                f"worker RSS: {idle / 1024:.0f} MiB before, {after / 1024:.0f} MiB after -> {per_100k:.0f} MiB per 100,000 open incidents"
            )
            memory = {"open_incidents": args.open_incidents, "rss_before_mib": idle / 1024, "rss_after_mib": after / 1024,
                      "mib_per_100k_open": per_100k}  # fmt: skip
        if args.against and against is None:
            against = other_worker(args, work, bootstrap, records)
        if against is not None:
            print(f"the worker of {args.against}: every stage {against['drained']:9.0f} records/s   "
                  f"ratio {against['drained'] / floor:.2f} (Faust), {against['cpu_per_record'] * 1e6:.0f} µs per input record")  # fmt: skip
        return Round(base, floor, rate, drained, cpu / folded, written / folded, memory, against)
    finally:
        if worker is not None:
            stop(worker)


if __name__ == "__main__":
    sys.exit(main())
