"""A real Prometheus server scraping two real workers: one series per service (and severity), right
values, and still right — with no stale series — after one worker stops and the other takes over."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.binaries import prometheus_binary
from tests.integration.conftest import Stack, free_port
from tests.integration.helpers import post_each

pytestmark = pytest.mark.integration

ALERTS, CHANGES = "prom-alerts-token-0123456789", "prom-changes-token-0123456789"
INTEGRATIONS = f"""integrations:
  - {{name: alerts, source: native, token: {ALERTS}}}
  - {{name: changes, source: native, token: {CHANGES}}}
"""


def scenario(now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """svc-a: two high incidents restored in 600 s and 1200 s, two changes of which one caused the
    first; svc-b: one critical incident restored in 300 s, caused by its only change."""

    def at(value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    def incident(
        key: str, service: str, severity: str, opened: datetime, seconds: int
    ) -> list[tuple[str, dict[str, Any]]]:
        base = {"external_aggregate_key": key, "severity": severity, "labels": {"service": service}}
        return [(ALERTS, {**base, "event_id": f"{key}-o", "action": "open", "occurred_at": at(opened)}),
                (ALERTS, {**base, "event_id": f"{key}-r", "action": "resolve",
                          "occurred_at": at(opened + timedelta(seconds=seconds))})]  # fmt: skip

    def change(key: str, service: str, when: datetime) -> tuple[str, dict[str, Any]]:
        return (CHANGES, {"event_id": key, "change_key": key, "status": "done", "occurred_at": at(when),
                          "labels": {"service": service}})  # fmt: skip

    a1, a2, b1 = now - timedelta(hours=5), now - timedelta(hours=3), now - timedelta(hours=2)
    return [
        *incident("a1", "svc-a", "high", a1, 600),
        *incident("a2", "svc-a", "high", a2, 1200),
        *incident("b1", "svc-b", "critical", b1, 300),
        change("a-c1", "svc-a", a1 - timedelta(minutes=10)),
        change("a-c2", "svc-a", now - timedelta(hours=8)),
        change("b-c1", "svc-b", b1 - timedelta(minutes=30)),
    ]


EXPECTED_MTTR = {("svc-a", "high"): 900.0, ("svc-b", "critical"): 300.0}
EXPECTED_CFR = {"svc-a": 0.5, "svc-b": 1.0}


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def settled(url: str, instances: set[str]) -> tuple[bool, Any]:
    """Whether both queries give exactly one series per key, the expected values, only from `instances`."""
    mttr = query(url, 'incidentflow_mttr_seconds{window="30d"}')
    cfr = query(url, 'incidentflow_change_failure_ratio{window="30d"}')
    mttr_keys = [(s["metric"]["service"], s["metric"]["severity"]) for s in mttr]
    cfr_keys = [s["metric"]["service"] for s in cfr]
    got = (
        {k: float(s["value"][1]) for k, s in zip(mttr_keys, mttr, strict=True)},
        {k: float(s["value"][1]) for k, s in zip(cfr_keys, cfr, strict=True)},
        {s["metric"]["instance"] for s in mttr + cfr},
    )
    ok = (
        sorted(mttr_keys) == sorted(EXPECTED_MTTR)  # exactly one series each: no duplicates across workers
        and sorted(cfr_keys) == sorted(EXPECTED_CFR)
        and got[0] == EXPECTED_MTTR
        and got[1] == EXPECTED_CFR
        and got[2] <= instances
    )
    return ok, got


def wait_for(url: str, instances: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    ok, got = settled(url, instances)
    while not ok and time.monotonic() < deadline:
        time.sleep(1)
        ok, got = settled(url, instances)
    assert ok, got
    return got


def test_prometheus_sees_one_right_series_per_key_before_and_after_a_worker_leaves(
    stack_factory: Any, tmp_path: Path
) -> None:
    binary = prometheus_binary("prometheus")
    stack: Stack = stack_factory(INTEGRATIONS, partitions=8)
    stack.start_gateway()
    workers = [stack.start_worker(0), stack.start_worker(1)]
    targets = [f"127.0.0.1:{port}" for port in stack.worker_ports]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: incidentflow-worker\n    static_configs:\n      - targets: {targets}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        statuses = post_each([(f"{stack.gateway_url}/v1/events/{token}", body)
                              for token, body in scenario(datetime.now(UTC))])  # fmt: skip
        assert statuses == {202: 9}, statuses

        wait_for(url, set(targets))
        workers[0].stop(signal.SIGTERM)
        # The stopped worker's series go stale at its first failed scrape; the survivor owns them all.
        got = wait_for(url, {targets[1]}, timeout=180)
        assert got[2] == {targets[1]}
        resolved = query(url, 'sum by (service) (incidentflow_incidents_resolved{window="30d"})')
        assert {s["metric"]["service"]: float(s["value"][1]) for s in resolved} == {"svc-a": 2.0, "svc-b": 1.0}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
