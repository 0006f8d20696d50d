"""A worker told to stop (SIGTERM) ends within 10 s, also when its broker is already gone."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from incidentflow.topics import Topics
from tests.integration.conftest import OwnBroker, Stack, read_topic

pytestmark = pytest.mark.integration

TOKEN = "stop-native-token-0123456789"


@pytest.mark.parametrize("broker_gone", ["before", "while stopping"])
def test_sigterm_ends_a_worker_whose_broker_is_gone_within_ten_seconds(
    stack_factory: Callable[..., Stack], own_broker: OwnBroker, broker_gone: str
) -> None:
    stack = stack_factory(f"integrations:\n  - {{name: native, source: native, token: {TOKEN}}}\n", partitions=2)
    stack.bootstrap = own_broker.bootstrap
    stack.start_gateway()
    worker = stack.start_worker(0)
    # the worker has records in hand: it folds them, commits, and its fetcher keeps fetching
    alert = {"external_aggregate_key": "db-1", "action": "open", "occurred_at": "2026-11-01T10:00:00Z"}
    assert httpx.post(f"{stack.gateway_url}/v1/events/{TOKEN}", json=alert, timeout=10).status_code == 202
    read_topic(stack.bootstrap, Topics(stack.namespace).incidents, lambda records: bool(records), timeout=60)
    if broker_gone == "before":
        own_broker.stop()
        time.sleep(2)  # the worker's fetcher and heartbeat now wait on a broker that is gone
    started = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    if broker_gone == "while stopping":  # as Ctrl-C in `make demo`: the worker and the broker stop together
        own_broker.stop()
    try:
        worker.popen.wait(timeout=10)
    except Exception:  # noqa: BLE001  # the failure below says how long it took
        worker.popen.kill()
        worker.popen.wait()
        pytest.fail(f"the worker was still running 10 s after SIGTERM:\n{worker.log.read_text()[-3000:]}")
    took = time.monotonic() - started
    assert took <= 10, took
