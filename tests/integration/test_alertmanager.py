"""A real Prometheus and a real Alertmanager feeding the gateway: a target's metric breaks and heals,
the alert rule fires and resolves, Alertmanager posts its notifications (and its repeats) with a
bearer token, and the incident opens and resolves with the times Alertmanager sent, a change posted
before it is its suspect, and its time to restore is in the report."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidentflow.domain.envelope import RawEnvelope
from incidentflow.topics import Topics
from tests.binaries import prometheus_binary
from tests.integration.conftest import Stack, free_port, read_topic

pytestmark = pytest.mark.integration

AM_TOKEN, DEPLOYS = "alertmanager-token-0123456789", "am-deploys-token-0123456789"
INTEGRATIONS = f"""integrations:
  - {{name: alertmanager, source: alertmanager, token: {AM_TOKEN}, labels: {{env: prod}}, default_severity: low}}
  - {{name: deploys, source: native, token: {DEPLOYS}}}
"""
RULES = """groups:
  - name: checkout
    interval: 1s
    rules:
      - alert: CheckoutDown
        expr: checkout_up == 0
        labels: {severity: critical, service: checkout}
        annotations: {summary: "checkout is down", description: "checkout answers no health check"}
"""


class Target:
    """A scrape target whose `checkout_up` is what the test sets: 1 healthy, 0 broken."""

    def __init__(self) -> None:
        self.up = 1
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE checkout_up gauge\ncheckout_up {target.up}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def monitoring(tmp_path: Path) -> Iterator[Callable[[str], Target]]:
    """Starts a target, Prometheus with the rule, and Alertmanager routed to the given gateway."""
    prometheus, alertmanager = prometheus_binary("prometheus"), prometheus_binary("prometheus-alertmanager")
    processes: list[subprocess.Popen[bytes]] = []
    targets: list[Target] = []

    def start(gateway_url: str) -> Target:
        target = Target()
        targets.append(target)
        am_port, prom_port = free_port(), free_port()
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(json.dumps({
            "route": {"receiver": "incidentflow", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "2s"},
            "receivers": [{"name": "incidentflow", "webhook_configs": [{
                "url": f"{gateway_url}/v1/ingest/alertmanager", "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials": AM_TOKEN}}}]}],
        }))  # fmt: skip
        am_log = tmp_path / "alertmanager.log"
        processes.append(_spawn([alertmanager, f"--config.file={am_config}", f"--storage.path={tmp_path / 'am'}",
                                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], am_log))  # fmt: skip
        _ready(f"http://127.0.0.1:{am_port}/-/ready", processes[-1], am_log)
        (tmp_path / "rules.yml").write_text(RULES)
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "checkout", "static_configs": [{"targets": [target.address]}]}],
        }))  # fmt: skip
        prom_log = tmp_path / "prometheus.log"
        processes.append(_spawn([prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], prom_log))  # fmt: skip
        _ready(f"http://127.0.0.1:{prom_port}/-/ready", processes[-1], prom_log)
        return target

    yield start
    for process in reversed(processes):
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for target in targets:
        target.close()


def _notifications(stack: Stack, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The Alertmanager notifications the gateway accepted, from the raw topic."""

    def decoded(records: list[Any]) -> list[dict[str, Any]]:
        envelopes = [RawEnvelope.model_validate_json(r.value) for r in records]
        return [json.loads(e.body) for e in envelopes if e.source == "alertmanager"]

    records = read_topic(stack.bootstrap, Topics(stack.namespace).raw, lambda rs: until(decoded(rs)), timeout=120)
    return decoded(records)


def _latest(stack: Stack, topic: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The latest record of a topic's key once one satisfies `done` (or the last seen, for the message)."""
    records = read_topic(stack.bootstrap, topic, lambda rs: any(done(json.loads(r.value)) for r in rs), timeout=90)
    matching = [json.loads(r.value) for r in records if done(json.loads(r.value))]
    assert matching, [json.loads(r.value) for r in records][-3:]
    return matching[-1]


def test_alertmanager_opens_and_resolves_an_incident_with_its_suspect_and_time_to_restore(
    stack_factory: Callable[..., Stack], monitoring: Callable[[str], Target]
) -> None:
    stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker()
    names = Topics(stack.namespace)
    change_at = datetime.now(UTC) - timedelta(minutes=5)
    deploy = {"event_id": "deploy-1", "change_key": "checkout-v42", "status": "done", "title": "Deploy checkout v42",
              "occurred_at": change_at.isoformat(), "labels": {"service": "checkout", "env": "prod"}}  # fmt: skip
    assert httpx.post(f"{stack.gateway_url}/v1/events/{DEPLOYS}", json=deploy, timeout=10).status_code == 202

    target = monitoring(stack.gateway_url)
    time.sleep(3)  # healthy scrapes first: the rule sees the metric go from 1 to 0
    target.up = 0
    firing = _notifications(stack, lambda ns: sum(n["status"] == "firing" for n in ns) >= 2)  # the first and a repeat
    target.up = 1
    resolved = [n for n in _notifications(stack, lambda ns: any(n["status"] == "resolved" for n in ns))
                if n["status"] == "resolved"]  # fmt: skip

    alert = resolved[0]["alerts"][0]
    assert all(n["alerts"][0]["fingerprint"] == alert["fingerprint"] for n in firing)
    assert {n["alerts"][0]["startsAt"] for n in firing} == {alert["startsAt"]}  # the repeats are the same alert
    aggregate = f"alertmanager:{alert['fingerprint']}"
    incident = _latest(stack, names.incidents, lambda i: i["aggregate_id"] == aggregate and i["status"] == "resolved")
    starts, ends = datetime.fromisoformat(alert["startsAt"]), datetime.fromisoformat(alert["endsAt"])
    assert datetime.fromisoformat(incident["opened_at"]) == starts
    assert datetime.fromisoformat(incident["resolved_at"]) == ends
    assert incident["episodes"] == [{"opened_at": incident["opened_at"], "resolved_at": incident["resolved_at"]}]
    assert incident["event_count"] == 2, incident  # Alertmanager's repeats and redeliveries add nothing
    assert incident["severity"] == "critical"
    assert incident["title"] == "checkout is down"
    assert incident["labels"]["service"] == "checkout" and incident["labels"]["env"] == "prod"
    assert incident["time_to_restore_seconds"] == pytest.approx((ends - starts).total_seconds(), abs=0.001)

    suspect = _latest(stack, names.correlations, lambda c: c["aggregate_id"] == aggregate)
    assert suspect["change_id"] == "deploys:checkout-v42" and suspect["rank"] == 1 and not suspect["retracted"]

    first, last = change_at.date().isoformat(), ends.date().isoformat()
    env = stack.env()
    deadline = time.monotonic() + 60
    while True:
        report = subprocess.run([sys.executable, "-m", "incidentflow.cli", "report", "--from", first, "--to", last,
                                 "--service", "checkout", "--json"], env=env, capture_output=True, text=True)  # fmt: skip
        assert report.returncode == 0, report.stderr
        rows = [r for r in json.loads(report.stdout)["services"] if r["env"] == "prod"]
        if (rows and rows[0]["incidents"] == 1) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(rows) == 1 and rows[0]["incidents"] == 1, rows
    assert rows[0]["mttr_seconds"] == pytest.approx(incident["time_to_restore_seconds"], rel=0.001)
    assert rows[0]["failed_changes"] == 1 and rows[0]["recoveries"] == 1, rows
