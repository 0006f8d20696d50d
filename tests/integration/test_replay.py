"""`incidentflow replay` rebuilds the same incidents from the raw topic as the live worker computed."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.integration.conftest import Stack, free_port, read_topic
from tests.integration.helpers import differences, expected_incidents, latest_by_key, post_all
from tests.scenario import alert_histories, deliveries

pytestmark = pytest.mark.integration

TOKEN = "replay-native-token-0123456789"
INTEGRATIONS = (
    f"integrations:\n  - {{name: replay, source: native, token: {TOKEN}, rate_limit_per_minute: 100000000}}\n"
)


def test_replay_rebuilds_the_live_incidents(stack_factory: Any) -> None:
    events = alert_histories(seed=11, aggregates=300, mean_events=6)
    expected = expected_incidents(events, "replay")
    stack: Stack = stack_factory(INTEGRATIONS, partitions=4)
    stack.start_gateway()
    stack.start_worker()
    assert post_all(f"{stack.gateway_url}/v1/events/{TOKEN}", [e.body for e in deliveries(events, seed=12)]).keys() == {
        202
    }
    live = latest_by_key(
        read_topic(stack.bootstrap, f"{stack.namespace}.incidents", lambda r: latest_by_key(r) == expected)
    )
    assert live == expected

    rebuilt_namespace = f"{stack.namespace}-v2"
    done = subprocess.run(
        [sys.executable, "-m", "incidentflow.cli", "replay", "--into", rebuilt_namespace],
        env=stack.env(INCIDENTFLOW_WEB_PORT=str(free_port()), INCIDENTFLOW_DATA_DIR=str(stack.workdir / "replay-data")),
        capture_output=True, text=True, timeout=240, cwd=stack.workdir,
    )  # fmt: skip
    (stack.workdir / "replay.log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "caught up" in done.stderr and "replay [" in done.stderr
    rebuilt = latest_by_key(
        read_topic(stack.bootstrap, f"{rebuilt_namespace}.incidents", lambda r: latest_by_key(r) == live)
    )
    assert rebuilt == live, (differences(rebuilt, live), done.stderr[-1500:])
