"""A real Kafka broker for the integration suite, and real gateway and worker processes on it.

The broker, in order of preference: INCIDENTFLOW_KAFKA_BOOTSTRAP (an existing broker; `make test`
sets it to the one it started), else the local KRaft broker of deploy/kafka (Java and Maven),
else testcontainers (a Docker engine). When none is possible the suite fails with one message:
it never skips Kafka silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from incidentflow.runtime.progress import group_lag
from incidentflow.topics import Topics

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Schemathesis gives every operation's test the same node id; pytest-xdist needs them distinct."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label is not None and "[" not in item.nodeid:
            # the id pytest and xdist report and schedule by (pytest 9 keeps it structured)
            item._id = type(item._id).parse(f"{item.nodeid}[{label}]")  # noqa: SLF001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_broker_port(count: int = 2) -> int:
    """The first of `count` free ports in a row for local brokers (each node's controller takes the port
    after its client port), all below Linux's range of ephemeral ports (32768 and up), so that no
    outgoing connection takes one while a node is down (a CI run lost a broker start to a client
    socket on port + 1)."""
    for _ in range(200):
        port = random.randrange(20000, 32000 - count)
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, s in enumerate(sockets):
                s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return port
    raise RuntimeError(f"no {count} free ports in a row between 20000 and 32000")


def _answers(bootstrap: str, timeout: float = 5.0) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("INCIDENTFLOW_KAFKA_BOOTSTRAP")
    if given:
        if not _answers(given):
            pytest.fail(f"INCIDENTFLOW_KAFKA_BOOTSTRAP={given} does not answer", pytrace=False)
        yield given
        return
    if shutil.which("java") and shutil.which("mvn"):
        port = free_broker_port()
        home = tempfile.mkdtemp(prefix="incidentflow-kafka-")
        env = {**os.environ, "INCIDENTFLOW_KAFKA_PORT": str(port), "INCIDENTFLOW_KAFKA_HOME": home}
        subprocess.run([str(KAFKA_SH), "up"], env=env, check=True)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([str(KAFKA_SH), "down"], env=env, check=False)
            shutil.rmtree(home, ignore_errors=True)
        return
    if _docker_engine():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.2").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail(
        "no Kafka broker for the integration tests: set INCIDENTFLOW_KAFKA_BOOTSTRAP to a broker, "
        "or install Java 17+ and Maven (deploy/kafka fetches Apache Kafka), or run a Docker engine",
        pytrace=False,
    )


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = 15, timeout: float = 20.0) -> None:
        stop_all([self], sig, timeout)


def stop_all(processes: list[Process], sig: int = 15, timeout: float = 20.0) -> None:
    """Signals every process at once, then waits for each (killed after `timeout`): a test's workers leave
    together instead of each waiting for the group to rebalance onto the ones still running."""
    running = [p for p in processes if p.popen.poll() is None]
    for process in running:
        process.popen.send_signal(sig)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


@dataclass
class Stack:
    """Gateway and workers of one test, on a topic namespace of its own."""

    bootstrap: str
    namespace: str
    workdir: Path
    integrations_file: Path
    partitions: int
    gateway_port: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    """More INCIDENTFLOW_ settings of every process of the stack (a cluster's replication)."""
    processes: list[Process] = field(default_factory=list)
    worker_ports: list[int] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "INCIDENTFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "INCIDENTFLOW_TOPIC_NAMESPACE": self.namespace,
            "INCIDENTFLOW_INTEGRATIONS_FILE": str(self.integrations_file),
            "INCIDENTFLOW_PARTITIONS": str(self.partitions),
            "INCIDENTFLOW_APP_ID": f"{self.namespace}-app",
            "INCIDENTFLOW_SESSION_TIMEOUT_SECONDS": "6",
            "INCIDENTFLOW_LOG_LEVEL": "info",
            **self.settings,
            **extra,
        }

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> Process:
        log = self.workdir / f"{name}.log"  # appended to: a process started again keeps its predecessors' lines
        popen = subprocess.Popen(
            [sys.executable, "-m", "incidentflow.cli", command],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_gateway(self, port: int | None = None, **extra: str) -> Process:
        """Starts a gateway, on `port` (the previous one's, after a crash) or a free one."""
        self.gateway_port = port or free_port()
        process = self._spawn("gateway", "gateway", self.env(INCIDENTFLOW_GATEWAY_PORT=str(self.gateway_port), **extra))
        wait_http(f"{self.gateway_url}/healthz", process)
        return process

    def start_worker(self, index: int = 0, **extra: str) -> Process:
        port = free_port()
        self.worker_ports.append(port)
        data = self.workdir / f"worker-{index}-data"
        env = self.env(INCIDENTFLOW_WEB_PORT=str(port), INCIDENTFLOW_DATA_DIR=str(data), **extra)
        process = self._spawn(f"worker-{index}", "worker", env)
        wait_http(f"http://127.0.0.1:{port}/metrics", process, timeout=90)
        return process

    def on(self, cluster: OwnCluster) -> Stack:
        """The stack's processes use `cluster`, and every topic they create is replicated there."""
        self.bootstrap = cluster.bootstrap
        self.settings.update(cluster.SETTINGS)
        return self

    def progress(self) -> str:
        """How far the workers' group has committed each input topic: for a failure message that says
        which stage stopped (`raw 9000/9000, scope 1200/1264, ...`)."""
        names = Topics(self.namespace)
        topics = [names.raw, names.alerts, names.changes, names.verdicts, names.scope, names.suspects,
                  names.contributions, names.history, names.history_verdicts, names.lead, names.lead_verdicts]  # fmt: skip
        try:
            lag = asyncio.run(group_lag(self.bootstrap, f"{self.namespace}-app", topics))
        except Exception as error:  # noqa: BLE001  # a diagnostic: the failure it explains matters more
            return f"group progress not known: {error!r}"
        return ", ".join(f"{t.rsplit('.', 1)[-1]} {lag.done[t]}/{lag.total[t]}" for t in topics)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log.read_text(errors='replace')}" for p in self.processes)


def wait_http(url: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log.read_text()[-4000:]}"
            )
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{process.name} did not answer at {url} within {timeout}s")


@pytest.fixture
def stack_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(integrations_yaml: str, partitions: int = 4) -> Stack:
        path = tmp_path / "integrations.yaml"
        path.write_text(integrations_yaml)
        namespace = f"it-{uuid.uuid4().hex[:10]}"
        stack = Stack(kafka_bootstrap, namespace, tmp_path, path, partitions)
        stacks.append(stack)
        return stack

    yield make
    # The test is over: its processes are killed rather than stopped cleanly (each namespace is the
    # test's own, so what a killed worker leaves behind concerns no other test), which saves the
    # seconds a clean stop takes per process on a busy machine.
    stop_all([process for stack in stacks for process in stack.processes], signal.SIGKILL)


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0) -> list[Any]:
    """Every record of `topic` from the start, read until `until(records)` holds or the timeout passes."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for items in batch.values():
                    records.extend(items)
                if until(records):
                    break
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def scrape(url: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value}, label order as exposed."""
    samples: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@dataclass
class OwnBroker:
    """A broker this test may stop and start: the local KRaft broker of deploy/kafka, data kept across restarts."""

    port: int
    home: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        env = {**os.environ, "INCIDENTFLOW_KAFKA_PORT": str(self.port), "INCIDENTFLOW_KAFKA_HOME": self.home,
               "INCIDENTFLOW_KAFKA_KEEP": "1", "INCIDENTFLOW_KAFKA_HEAP": "512m", "INCIDENTFLOW_KAFKA_NODES": "1"}  # fmt: skip
        subprocess.run([str(KAFKA_SH), action], env=env, check=True, capture_output=True)

    def start(self) -> None:
        self._run("up")

    def stop(self) -> None:
        self._run("down")


@dataclass
class OwnCluster:
    """Three KRaft nodes (broker and controller each) of deploy/kafka on this machine, for one test:
    topics replicated three times with `min.insync.replicas=2`. Nodes are numbered 1 to 3."""

    port: int
    home: str
    NODES = (1, 2, 3)
    SETTINGS: ClassVar[dict[str, str]] = {
        "INCIDENTFLOW_REPLICATION_FACTOR": "3",
        "INCIDENTFLOW_MIN_INSYNC_REPLICAS": "2",
    }
    """What the gateway and workers on it are given: every topic they create has three replicas."""

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + 2 * (node - 1)}" for node in self.NODES)

    def run(self, *action: str) -> str:
        """`deploy/kafka/kafka.sh <action>` on this cluster: up, down, start N, stop N, kill N, pause N, resume N."""
        env = {**os.environ, "INCIDENTFLOW_KAFKA_PORT": str(self.port), "INCIDENTFLOW_KAFKA_HOME": self.home,
               "INCIDENTFLOW_KAFKA_NODES": "3", "INCIDENTFLOW_KAFKA_KEEP": "1", "INCIDENTFLOW_KAFKA_HEAP": "384m"}  # fmt: skip
        done = subprocess.run([str(KAFKA_SH), *action], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kafka.sh {' '.join(action)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def running(self) -> list[int]:
        return [node for node in self.NODES if (Path(self.home) / f"node-{node}" / "kafka.pid").exists()]

    def active_controller(self) -> int:
        """The node that leads the controller quorum now, by the newest epoch any running node has seen."""
        states = []
        for node in self.running():
            path = Path(self.home) / f"node-{node}" / "data" / "__cluster_metadata-0" / "quorum-state"
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(path.read_text())
                states.append((state["leaderEpoch"], state["leaderId"]))
        epoch, leader = max(states)
        assert leader in self.NODES, f"no controller leads the quorum (epoch {epoch})"
        return int(leader)

    def partitions(self, topic: str) -> list[tuple[int, int, list[int], list[int]]]:
        """(partition, leader, replicas, in-sync replicas) of each partition of `topic`."""

        async def describe() -> list[tuple[int, int, list[int], list[int]]]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
            await admin.start()
            try:
                (found,) = await admin.describe_topics([topic])
            finally:
                await admin.close()
            return sorted((p["partition"], p["leader"], p["replicas"], p["isr"]) for p in found["partitions"])

        return asyncio.run(describe())

    def topics(self, prefix: str) -> list[str]:
        """The topics whose names start with `prefix`, and the group offsets topic."""

        async def names() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
            await admin.start()
            try:
                return sorted(n for n in await admin.list_topics() if n.startswith(prefix) or n == "__consumer_offsets")
            finally:
                await admin.close()

        return asyncio.run(names())

    def wait_in_sync(self, prefix: str, timeout: float = 180) -> None:
        """Blocks until every partition of the topics named `prefix...` (and of the group offsets) has all
        three replicas in sync: what a rolling restart waits for before it takes the next node down."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [(topic, p) for topic in self.topics(prefix) for p, _, replicas, isr in self.partitions(topic)
                      if sorted(isr) != sorted(replicas)]  # fmt: skip
            if not behind:
                return
            assert time.monotonic() < deadline, f"replicas still out of sync after {timeout} s: {behind[:10]}"
            time.sleep(1)


@pytest.fixture
def own_cluster() -> Iterator[OwnCluster]:
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.fail("this test runs a cluster of three brokers: it needs Java 17+ and Maven", pytrace=False)
    cluster = OwnCluster(free_broker_port(6), tempfile.mkdtemp(prefix="incidentflow-cluster-"))
    cluster.run("up")
    try:
        yield cluster
    finally:
        cluster.run("down")
        shutil.rmtree(cluster.home, ignore_errors=True)


@pytest.fixture
def own_broker() -> Iterator[OwnBroker]:
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.fail("this test stops and restarts a broker of its own: it needs Java 17+ and Maven", pytrace=False)
    broker = OwnBroker(free_broker_port(), tempfile.mkdtemp(prefix="incidentflow-own-kafka-"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.home, ignore_errors=True)
