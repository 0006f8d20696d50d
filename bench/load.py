"""Open-model load against the whole pipeline: constant arrival rate, every source mixed.

    .venv/bin/python bench/load.py --search            # find the highest sustained rate
    .venv/bin/python bench/load.py --rate 100 --seconds 60

Requests are sent at fixed times (i / rate), whatever the server does, so a slow answer cannot
hold the next request back and hide latency (no coordinated omission): a request's latency runs
from the time it was due, not from when it left. Traffic is the trust suite's generator (native,
Sleuth, Uptrends, Flashduty alerts and changes, Elven); one request in twenty is a probe, an open
of an incident of its own at the traffic's event time, whose delay is measured from its 202 to the
Kafka timestamp of its first record on `incidentflow.incidents` (the request after it resolves it).

A rate is sustained when every request got its answer (202, or 204 for a PagerDuty event type the
product does not read), the gateway's p99 is under 100 ms,
the probes' p99 end-to-end delay is under 1 s, and every stage of the pipeline is drained within
15 s after the 60-second step (every probe seen, consumer lag 0 on every input partition of every
agent). The drain bound is what makes this the whole pipeline's rate: a stage that handles less
than 80% of the offered rate has more than 12 s of work left at the end of the step (a looser
bound would pass a stage too slow to keep up with a soak at half the rate). `--search` raises the rate by half while it is sustained,
then bisects between the last rate that passed and the first that failed.

Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local broker of deploy/kafka on port 39092.
Writes its figures as JSON (`--out`, default bench/results/load.json) for bench/TRUST.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer
from common import REPO, broker, product_env, spawn, write_result

sys.path.insert(0, str(REPO))
from tests.trust.harness import lag as workers_lag  # noqa: E402
from tests.trust.traffic import FLEET, START, Webhook, generate, integrations_yaml, span_days  # noqa: E402

from incidentflow.config import Settings  # noqa: E402
from incidentflow.topics import ensure_topics  # noqa: E402

GATEWAY_P99_MS = 100.0
E2E_P99_MS = 1000.0
PROBE_EVERY = 20
IN_FLIGHT = 2000
DRAIN_SECONDS = 15.0
CHUNK = 20000  # events generated at a time


@dataclass
class Step:
    """One constant-rate step and what came of it."""

    offered_rate: float
    seconds: float
    requests: int = 0
    achieved_rate: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    """Requests that got the answer they should: 202, or 204 for a webhook that means no event."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    e2e_ms: dict[str, float] = field(default_factory=dict)
    drained: bool = False
    drain_seconds: float | None = None
    """From the end of the step until every probe was seen and the lag was zero (None: not within the bound)."""
    sustained: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p95": 0.0, "p99": 0.0, "max": max(values, default=0.0)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
    }


class Pipeline:
    """A gateway and worker(s) on a namespace of their own, and the traffic to send them."""

    def __init__(self, bootstrap: str, work: Path, workers: int = 1, horizon_days: int | None = 36500,
                 settle: bool = False) -> None:  # fmt: skip
        self.bootstrap, self.work, self.horizon_days, self.settle = bootstrap, work, horizon_days, settle
        self.namespace = f"load-{uuid.uuid4().hex[:6]}"
        (work / "integrations.yaml").write_text(integrations_yaml())
        self.gateway_port = free_port()
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.worker_ports = [free_port() for _ in range(workers)]
        self.processes: dict[str, Any] = {}
        self.traffic: Iterator[Webhook] = self._traffic()
        self.traffic_start = START
        """Where the event time of the traffic being sent now starts: the probes take it."""
        self.sent = 0

    def _traffic(self) -> Iterator[Webhook]:
        """Fresh webhooks for as long as the run goes, never a repeat, each batch of 20,000 events
        in the event-time span after the last one's. All batches over one span would make every
        hour of it denser the longer the run went (each change is compared with the incidents of its
        scope within its window): the soak's stages after the fold fell behind after 11 minutes
        that way, at a rate the 30-second load steps sustained."""
        seed = 0
        while True:
            self.traffic_start = START + timedelta(days=span_days(CHUNK) * seed)
            yield from generate(1000 + seed, CHUNK, start=self.traffic_start, settle=self.settle)
            seed += 1

    def start(self) -> None:
        asyncio.run(ensure_topics(Settings(kafka_bootstrap=self.bootstrap, topic_namespace=self.namespace,
                                           partitions=8)))  # fmt: skip
        # The traffic's event time runs 22 days per 20,000 events, years in a run, while Elven's events
        # take the gateway's now: under the default state horizon they are too late once the traffic is
        # 90 days past today. A load search keeps them all with a horizon of a century; the soak runs
        # the product's horizon, for its state to reach a steady size.
        horizon = {} if self.horizon_days is None else {"INCIDENTFLOW_STATE_HORIZON_DAYS": str(self.horizon_days)}
        base = product_env(self.bootstrap, self.namespace, self.work, **horizon,
                           INCIDENTFLOW_INTEGRATIONS_FILE=str(self.work / "integrations.yaml"))  # fmt: skip
        self.processes["gateway"] = spawn(
            "gateway", {**base, "INCIDENTFLOW_GATEWAY_PORT": str(self.gateway_port)}, self.work
        )
        for i, port in enumerate(self.worker_ports):
            env = {**base, "INCIDENTFLOW_WEB_PORT": str(port), "INCIDENTFLOW_DATA_DIR": str(self.work / f"data-{i}")}
            self.processes[f"worker-{i}"] = spawn("worker", env, self.work)
        for url in [f"{self.gateway}/healthz", *(f"http://127.0.0.1:{p}/metrics" for p in self.worker_ports)]:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
        time.sleep(3)  # the workers' first rebalance
        self.check_alive()

    def check_alive(self) -> None:
        """Stops the run when a process of the pipeline has exited: its figures would mean nothing."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.work / f"{name.split('-')[0]}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name} exited with {process.returncode}:\n{log}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(30)

    def next_request(self) -> tuple[str, dict[str, Any], dict[str, str], str | None, int]:
        """(path, body, headers, probe key, the answer it should get) of the next request: 202, or 204
        for a webhook that means no event (a PagerDuty event type the product does not read)."""
        i = self.sent
        self.sent += 1
        if i % PROBE_EVERY in (0, 1):
            # A probe opens an incident of its own at the traffic's event time; the next request
            # resolves it, so that probes leave no open incident behind (state that never goes).
            key = f"probe-{self.namespace}-{i - i % PROBE_EVERY}"
            at = self.traffic_start + timedelta(minutes=i % PROBE_EVERY)
            body = {"external_aggregate_key": key, "action": "resolve" if i % PROBE_EVERY else "open",
                    "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "labels": {"team": "probe"}}  # fmt: skip
            probe = None if i % PROBE_EVERY else f"native:{key}"
            return f"/v1/events/{FLEET['native'].token}", body, {}, probe, 202
        w = next(self.traffic)
        return w.path, w.body, dict(w.headers), None, 204 if w.ignored else 202

    def lag(self) -> float | None:
        """Sum of the workers' consumer lag, or None while a worker does not answer."""
        return workers_lag(self.worker_ports)


async def run_step(pipeline: Pipeline, rate: float, seconds: float, drain_seconds: float = DRAIN_SECONDS) -> Step:
    step = Step(offered_rate=rate, seconds=seconds)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    answered = 0  # requests that got the answer they should: 202, or 204 for a webhook that means no event
    accepted_probes: dict[str, float] = {}
    in_flight = 0
    first_seen: dict[str, float] = {}
    # with no drain wait (soak minutes) the probes are not followed: the last step checks the delay
    seen = asyncio.create_task(_first_records(pipeline, first_seen)) if drain_seconds > 0 else None
    count = int(rate * seconds)

    prepared = [pipeline.next_request() for _ in range(count)]  # before the clock starts

    async def one(
        session: aiohttp.ClientSession, due: float, request: tuple[str, dict[str, Any], dict[str, str], str | None, int]
    ) -> None:
        nonlocal in_flight, answered
        path, body, headers, probe, expected = request
        if in_flight >= IN_FLIGHT:
            statuses["client-saturated"] += 1
            return
        in_flight += 1
        try:
            async with session.post(pipeline.gateway + path, json=body, headers=headers) as response:
                await response.read()
                statuses[str(response.status)] += 1
                answered += response.status == expected
                if response.status == 202 and probe:
                    accepted_probes[probe] = time.time()
        except aiohttp.ClientError as error:
            statuses[type(error).__name__] += 1
        finally:
            in_flight -= 1
            latencies.append((time.monotonic() - due) * 1000)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.monotonic()
        tasks = []
        for i in range(count):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(session, due, prepared[i])))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    step.requests = count
    step.statuses = dict(statuses)
    step.answered = answered
    step.achieved_rate = round(answered / elapsed, 1)
    step.latency_ms = percentiles(latencies)
    ended = time.monotonic()
    records: dict[str, float] = {}
    while time.monotonic() < ended + drain_seconds:
        records = dict(first_seen)
        if set(accepted_probes) <= set(records) and await asyncio.to_thread(pipeline.lag) == 0:
            step.drained, step.drain_seconds = True, round(time.monotonic() - ended, 1)
            break
        await asyncio.sleep(0.5)
    if seen is not None:
        seen.cancel()
    delays = [(records[k] - at) * 1000 for k, at in accepted_probes.items() if k in records]
    step.e2e_ms = percentiles(delays) if delays else {}
    step.sustained = (
        step.drained
        and answered == count
        and step.latency_ms["p99"] < GATEWAY_P99_MS
        and bool(step.e2e_ms)
        and step.e2e_ms["p99"] < E2E_P99_MS
    )
    return step


async def _first_records(pipeline: Pipeline, first_seen: dict[str, float]) -> None:
    """Notes the Kafka timestamp of the first incident record of every probe."""
    consumer = AIOKafkaConsumer(f"{pipeline.namespace}.incidents", bootstrap_servers=pipeline.bootstrap,
                                auto_offset_reset="earliest", group_id=None)  # fmt: skip
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    key = record.key.decode()
                    if key.startswith("native:probe-"):
                        first_seen.setdefault(key, record.timestamp / 1000)
    finally:
        await consumer.stop()


def search(pipeline: Pipeline, start: float, seconds: float, rounds: int) -> tuple[float, list[Step]]:
    steps: list[Step] = []
    best, worst = 0.0, None
    rate = start
    while worst is None:
        step = asyncio.run(run_step(pipeline, rate, seconds))
        report(step)
        steps.append(step)
        if step.sustained:
            best, rate = rate, rate * 1.5
        else:
            worst = rate
    for _ in range(rounds):
        if best == 0.0:
            break
        rate = round((best + worst) / 2, 1)
        step = asyncio.run(run_step(pipeline, rate, seconds))
        report(step)
        steps.append(step)
        if step.sustained:
            best = rate
        else:
            worst = rate
    return best, steps


def report(step: Step) -> None:
    lat, e2e = step.latency_ms, step.e2e_ms
    drained = f"in {step.drain_seconds:.1f} s" if step.drain_seconds is not None else "NO"
    print(f"offered {step.offered_rate:7.1f}/s achieved {step.achieved_rate:7.1f}/s  gateway p50 {lat['p50']:.0f} "
          f"p95 {lat['p95']:.0f} p99 {lat['p99']:.0f} max {lat['max']:.0f} ms  202->incident p50 "
          f"{e2e.get('p50', float('nan')):.0f} p99 {e2e.get('p99', float('nan')):.0f} ms  statuses {step.statuses}  "
          f"drained {drained}  "
          f"{'SUSTAINED' if step.sustained else 'not sustained'}", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", action="store_true", help="find the highest sustained rate")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (the first rate with --search)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each step")
    parser.add_argument("--rounds", type=int, default=3, help="bisection steps after the first failure")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/load.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="incidentflow-load-"))
    with broker(work) as bootstrap:
        pipeline = Pipeline(bootstrap, work, args.workers)
        pipeline.start()
        try:
            if args.search:
                best, steps = search(pipeline, args.rate, args.seconds, args.rounds)
            else:
                step = asyncio.run(run_step(pipeline, args.rate, args.seconds))
                report(step)
                best, steps = (args.rate if step.sustained else 0.0), [step]
        finally:
            pipeline.stop()
    print(f"highest sustained rate: {best:.1f} requests/s (gateway p99 < {GATEWAY_P99_MS:.0f} ms, "
          f"202 -> incident p99 < {E2E_P99_MS:.0f} ms, every stage drained within {DRAIN_SECONDS:.0f} s)")  # fmt: skip
    write_result("load", {"workers": args.workers, "sustained_rate": best, "drain_bound_seconds": DRAIN_SECONDS,
                          "steps": [asdict(s) for s in steps]}, args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
