"""Every fixture of every source through `incidentflow send`, a real gateway and worker: incidents, and no token in any log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack, read_topic

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SOURCES = ["elven", "sleuth", "uptrends", "flashduty-alert", "flashduty-change", "native"]
TOKENS = {s: f"all-{s}-token-{i}0123456789" for i, s in enumerate(SOURCES)}
INTEGRATIONS = "integrations:\n" + "".join(
    f"  - {{name: all-{s}, source: {s}, token: {t}, labels: {{service: shop}}, default_severity: high}}\n"
    for s, t in TOKENS.items()
)
ROUTES = {"elven": "/v1/ingest/elven", "sleuth": "/v1/ingest/sleuth", "uptrends": "/v1/ingest/uptrends",
          "flashduty-alert": "/v1/ingest/flashduty/alert", "flashduty-change": "/v1/ingest/flashduty/change",
          "native": "/v1/events"}  # fmt: skip


def send(stack: Stack, source: str, files: list[Path], bearer: bool) -> str:
    url = f"{stack.gateway_url}{ROUTES[source]}" + ("" if bearer else f"/{TOKENS[source]}")
    extra = ["--token", TOKENS[source]] if bearer else []
    done = subprocess.run(
        [sys.executable, "-m", "incidentflow.cli", "send", *map(str, files), "--url", url, "--concurrency", "1", *extra],
        capture_output=True, text=True, timeout=120, env=stack.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_every_fixture_becomes_incidents_and_no_token_is_logged(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS)
    stack.start_gateway()
    stack.start_worker()
    outputs = []
    for i, source in enumerate(SOURCES):
        files = sorted(p for p in (FIXTURES / source).glob("*.json") if p.name.count(".") == 1)
        if source == "sleuth":  # in the order a sender would emit them
            files = sorted(files, key=lambda p: ("triggered" not in p.name, "resolved" in p.name, p.name))
        outputs.append(send(stack, source, files, bearer=bool(i % 2)))
    assert all("status codes: 202:" in out for out in outputs)

    expected = {
        "all-flashduty-alert:cpu-high-web-03": ("resolved", 1800.0),
        "all-uptrends:b6c2a8b0-1f1e-4a7c-9d11-0e0f7a4c2d99": ("resolved", 2460.0),
        "all-sleuth:INC-2102": ("resolved", 5700.0),
        "all-elven:disk-db-7": ("open", None),
    }

    def latest(records: list[Any]) -> dict[str, dict[str, Any]]:
        return {r.key.decode(): json.loads(r.value) for r in records}

    def settled(records: list[Any]) -> bool:
        got = latest(records)
        return all(k in got and got[k]["status"] == status for k, (status, _) in expected.items())

    incidents = latest(read_topic(stack.bootstrap, f"{stack.namespace}.incidents", settled))
    for key, (status, ttr) in expected.items():
        assert (incidents[key]["status"], incidents[key]["time_to_restore_seconds"]) == (status, ttr), key
    sleuth = incidents["all-sleuth:INC-2291"]
    assert (sleuth["status"], sleuth["reopen_count"]) == ("open", 1)

    changes = read_topic(stack.bootstrap, f"{stack.namespace}.changes", lambda r: len(r) >= 5)
    assert {json.loads(r.value)["status"] for r in changes} >= {"planned", "processing", "done", "ready"}

    everything = stack.logs() + "".join(outputs)
    assert everything.count("\n") > 20
    leaked = [t for t in TOKENS.values() if t in everything]
    assert not leaked, f"tokens found in logs: {leaked}"
