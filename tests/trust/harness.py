"""Running a trust scenario: send traffic while faults happen, then compare the end state with the expectation.

`Sender` posts deliveries from a thread of its own, as webhook senders do: every delivery until it
gets its answer (a 202, or a 204 for a webhook that means no event), retrying on any other and on refused connections, and keeps every attempt
(status and the gateway's `request_id`). `settle` follows `incidentflow.incidents`,
`incidentflow.correlations` and `incidentflow.metrics` until they equal the expectation or time
runs out, and `tally` counts what is lost, counted twice or wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.oracle import live_correlations
from tests.trust.expected import ChangeRows, Expected, LeadRows, MttrRows, RecoveryRows
from tests.trust.traffic import Webhook

GIVE_UP_AFTER = 600  # attempts of one delivery (a minute and more of refusals)


@dataclass
class Attempt:
    delivery: int
    status: int | str
    request_id: str | None
    retry_after: str | None = None
    at: float = 0.0


@dataclass
class Sender:
    """Posts every delivery until it is accepted, `concurrency` at a time, from a thread of its own."""

    url: Callable[[], str]
    deliveries: list[Webhook]
    concurrency: int = 16
    attempts: list[Attempt] = field(default_factory=list)
    accepted: int = 0
    gave_up: int = 0
    thread: threading.Thread | None = None

    def start(self) -> Sender:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        return self

    def wait_for(self, share: float, timeout: float = 900) -> None:
        """Blocks until `share` of the deliveries are accepted."""
        deadline = time.monotonic() + timeout
        while self.accepted + self.gave_up < share * len(self.deliveries):
            assert time.monotonic() < deadline, f"only {self.accepted} of {len(self.deliveries)} accepted"
            time.sleep(0.1)

    def join(self, timeout: float = 1800) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the sender did not finish"

    @property
    def statuses(self) -> dict[str, int]:
        return dict(Counter(str(a.status) for a in self.attempts))

    @property
    def accepted_ids(self) -> set[str]:
        return {a.request_id for a in self.attempts if a.status == 202 and a.request_id}

    async def _run(self) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(self.deliveries)):
            queue.put_nowait(i)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency), timeout=timeout) as s:
            await asyncio.gather(*(self._worker(s, queue) for _ in range(self.concurrency)))

    async def _worker(self, session: aiohttp.ClientSession, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            w = self.deliveries[i]
            for _ in range(GIVE_UP_AFTER):
                status: int | str
                request_id = retry_after = None
                try:
                    async with session.post(self.url() + w.path, json=w.body, headers=dict(w.headers)) as response:
                        status = response.status
                        retry_after = response.headers.get("Retry-After")
                        if status == 202 and not w.ignored:
                            request_id = (await response.json())["request_id"]
                        else:
                            await response.read()
                except (TimeoutError, aiohttp.ClientError) as error:
                    status = type(error).__name__
                self.attempts.append(Attempt(i, status, request_id, retry_after, time.monotonic()))
                if status == (204 if w.ignored else 202):
                    self.accepted += 1
                    break
                await asyncio.sleep(0.2)
            else:
                self.gave_up += 1


# -- reading what the pipeline wrote --------------------------------------------------------------


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic up to its end offsets now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001  # first sight of the topic
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        await consumer.stop()


def read_all(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(_read_all(bootstrap, topic))


def envelopes(bootstrap: str, namespace: str) -> list[dict[str, Any]]:
    """The raw envelopes on the raw topic (records that are not one, poison, left out)."""
    found = []
    for record in read_all(bootstrap, f"{namespace}.raw"):
        try:
            value = json.loads(record.value)
        except (ValueError, TypeError):
            continue
        if isinstance(value, dict) and "request_id" in value and "source" in value:
            found.append(value)
    return found


def elven_received(bootstrap: str, namespace: str) -> dict[str, datetime]:
    """The first receive time of every Elven `webhook-id`, from the raw envelopes."""
    first: dict[str, datetime] = {}
    for envelope in envelopes(bootstrap, namespace):
        key = envelope.get("idempotency_key")
        if envelope["source"] == "elven" and key:
            at = datetime.fromisoformat(envelope["received_at"].replace("Z", "+00:00"))
            first[key] = min(first.get(key, at), at)
    return first


def raw_request_ids(bootstrap: str, namespace: str) -> Counter[str]:
    return Counter(e["request_id"] for e in envelopes(bootstrap, namespace))


@dataclass
class Observed:
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    correlation_records: list[dict[str, Any]] = field(default_factory=list)
    metric_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def correlations(self) -> dict[tuple[str, str], dict[str, Any]]:
        return live_correlations(self.correlation_records)

    @property
    def mttr_rows(self) -> MttrRows:
        return {(r["service"], r["env"], r["severity"], r["day"]): (r["count"], r["sum_seconds"], r["max_seconds"])
                for r in self.metric_rows.values() if r["metric"] == "mttr" and r["count"]}  # fmt: skip

    @property
    def change_rows(self) -> ChangeRows:
        return {(r["service"], r["env"], r["day"]): (r["changes"], r["failed_changes"], r["reworked_changes"],
                                                     r["rollbacks"])
                for r in self.metric_rows.values() if r["metric"] == "changes" and r["changes"]}  # fmt: skip

    @property
    def recovery_rows(self) -> RecoveryRows:
        return {(r["service"], r["env"], r["day"]): (r["count"], r["sum_seconds"], r["max_seconds"])
                for r in self.metric_rows.values() if r["metric"] == "recovery" and r["count"]}  # fmt: skip

    @property
    def lead_rows(self) -> LeadRows:
        return {(r["service"], r["env"], r["day"]): (r["lead_times"], r["sum_seconds"], r["max_seconds"])
                for r in self.metric_rows.values() if r["metric"] == "changes" and r["lead_times"]}  # fmt: skip

    def matches(self, expected: Expected) -> bool:
        return (self.incidents == expected.incidents and self.correlations == expected.correlations
                and _close(self.mttr_rows, expected.mttr_rows) and self.change_rows == expected.change_rows
                and _close(self.recovery_rows, expected.recovery_rows)
                and _close(self.lead_rows, expected.lead_rows))  # fmt: skip


def _close(got: Mapping[Any, tuple[int, float, float]], want: Mapping[Any, tuple[int, float, float]]) -> bool:
    return got.keys() == want.keys() and all(
        got[k][0] == want[k][0] and abs(got[k][1] - want[k][1]) < 1e-6 and abs(got[k][2] - want[k][2]) < 1e-6
        for k in want
    )


def settle(bootstrap: str, namespace: str, expected: Expected, timeout: float) -> Observed:
    """Follows the output topics until they equal the expectation, or `timeout` seconds pass."""

    async def run() -> Observed:
        observed = Observed()
        topics = [f"{namespace}.{t}" for t in ("incidents", "correlations", "metrics")]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            checked = 0.0
            while time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                    for r in batch:
                        value = json.loads(r.value)
                        if r.topic == topics[0]:
                            observed.incidents[r.key.decode()] = value
                        elif r.topic == topics[1]:
                            observed.correlation_records.append(value)
                        else:
                            observed.metric_rows[r.key.decode()] = value
                if time.monotonic() - checked > 2:
                    checked = time.monotonic()
                    if observed.matches(expected):
                        break
        finally:
            await consumer.stop()
        return observed

    return asyncio.run(run())


def tally(observed: Observed, expected: Expected) -> dict[str, dict[str, int]]:
    """Lost, double-counted and otherwise wrong, per output, against the expectation.

    Incidents count events (`event_count`): an aggregate missing loses all of its events. Pairs
    count correlations. Metric rows count incidents and changes per (service, severity, day).
    """
    out: dict[str, dict[str, int]] = {}
    lost = double = wrong = 0
    for key, want in expected.incidents.items():
        got = observed.incidents.get(key)
        have = got["event_count"] if got else 0
        lost += max(0, want["event_count"] - have)
        double += max(0, have - want["event_count"])
        wrong += bool(got) and have == want["event_count"] and got != want
    double += sum(i["event_count"] for k, i in observed.incidents.items() if k not in expected.incidents)
    out["incidents"] = {"expected": len(expected.incidents), "lost": lost, "double": double, "wrong": wrong}
    got_pairs, want_pairs = observed.correlations, expected.correlations
    out["correlations"] = {
        "expected": len(want_pairs), "lost": len(want_pairs.keys() - got_pairs.keys()),
        "double": len(got_pairs.keys() - want_pairs.keys()),
        "wrong": sum(1 for k in want_pairs.keys() & got_pairs.keys() if want_pairs[k] != got_pairs[k]),
    }  # fmt: skip
    # mttr rows: (count, sum, max): the count is counted, sums and maxima are right or wrong;
    # change rows: (changes, failed changes, reworked changes, rollbacks): all are counted
    # recovery and lead rows: (count, sum, max) like mttr rows
    rows: list[tuple[str, Mapping[Any, tuple[Any, ...]], Mapping[Any, tuple[Any, ...]], int]] = [
        ("mttr_rows", observed.mttr_rows, expected.mttr_rows, 1),
        ("change_rows", observed.change_rows, expected.change_rows, 4),
        ("recovery_rows", observed.recovery_rows, expected.recovery_rows, 1),
        ("lead_rows", observed.lead_rows, expected.lead_rows, 1),
    ]
    for name, got_rows, want_rows, counted in rows:
        lost = double = wrong = 0
        for key in want_rows.keys() | got_rows.keys():
            want_row: tuple[Any, ...] = want_rows.get(key) or (0, 0.0, 0.0, 0)  # type: ignore[assignment]
            got_row: tuple[Any, ...] = got_rows.get(key) or (0, 0.0, 0.0, 0)  # type: ignore[assignment]
            for i in range(counted):
                lost += max(0, want_row[i] - got_row[i])
                double += max(0, got_row[i] - want_row[i])
            same_counts = want_row[:counted] == got_row[:counted]
            wrong += same_counts and any(
                abs(w - g) > 1e-6 for w, g in zip(want_row[counted:], got_row[counted:], strict=False)
            )
        out[name] = {
            "expected": sum(sum(r[:counted]) for r in want_rows.values()),
            "lost": lost,
            "double": double,
            "wrong": wrong,
        }
    return out


def differences(observed: Observed, expected: Expected, limit: int = 12) -> dict[str, list[str]]:
    """What differs, per output: up to `limit` keys each, with what was expected and what was seen
    (a failed scenario names them, so its cause can be looked for)."""
    outputs: list[tuple[str, Mapping[Any, Any], Mapping[Any, Any]]] = [
        ("incidents", expected.incidents, observed.incidents),
        ("correlations", expected.correlations, observed.correlations),
        ("mttr_rows", expected.mttr_rows, observed.mttr_rows),
        ("change_rows", expected.change_rows, observed.change_rows),
        ("recovery_rows", expected.recovery_rows, observed.recovery_rows),
        ("lead_rows", expected.lead_rows, observed.lead_rows),
    ]
    found: dict[str, list[str]] = {}
    for name, want, got in outputs:
        close = name in ("mttr_rows", "recovery_rows", "lead_rows")  # sums and maxima: within 1e-6, as `tally`
        keys = sorted((k for k in want.keys() | got.keys() if want.get(k) != got.get(k)
                       and not (close and k in want and k in got and _close({k: got[k]}, {k: want[k]}))), key=repr)  # fmt: skip
        if keys:
            found[name] = [f"{k!r}: expected {want.get(k)!r}, got {got.get(k)!r}" for k in keys[:limit]]
    return found


def lag_by_partition(ports: list[int]) -> dict[str, float] | None:
    """Consumer lag of every input partition the workers on `ports` own ({'topic[p]@port': lag}), None when
    one does not answer."""
    found: dict[str, float] = {}
    for port in ports:
        try:
            # An error page has no lag lines: it must not read as zero lag.
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status().text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("incidentflow_consumer_lag{"):
                labels, _, value = line.rpartition(" ")
                found[f"{labels[len('incidentflow_consumer_lag') :]}@{port}"] = float(value)
    return found


def lag(ports: list[int]) -> float | None:
    """Total consumer lag over the workers on `ports`, None when one does not answer."""
    found = lag_by_partition(ports)
    return None if found is None else sum(found.values())


def wait_lag_zero(ports: Callable[[], list[int]], timeout: float = 120) -> tuple[bool, dict[str, float] | None]:
    """Whether the lag returned to zero in time, and else the partitions still behind when it gave up.

    `ports` gives the live workers' ports at each look (a worker restarted meanwhile has a new one)."""
    deadline = time.monotonic() + timeout
    found = lag_by_partition(ports())
    while found is None or any(found.values()):
        if time.monotonic() > deadline:
            return False, found if found is None else {k: v for k, v in found.items() if v}
        time.sleep(1)
        found = lag_by_partition(ports())
    return True, {}


def record(result: dict[str, Any]) -> None:
    """Writes a scenario's figures for bench/TRUST.md when INCIDENTFLOW_TRUST_RESULTS names a directory."""
    where = os.environ.get("INCIDENTFLOW_TRUST_RESULTS")
    if where:
        result.setdefault("date", datetime.now(UTC).isoformat(timespec="seconds"))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        result.setdefault("commit", commit.stdout.strip() or "unknown")
        path = Path(where) / f"trust-{result['scenario']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(result, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
        )
