"""Scale-out that loses nothing: 3 workers, one SIGKILLed mid-stream and restarted, against the recomputation."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from tests.integration.conftest import Stack, read_topic
from tests.integration.helpers import differences, expected_incidents, latest_by_key, post_all
from tests.scenario import alert_histories, deliveries

pytestmark = pytest.mark.integration

TOKEN = "scale-native-token-0123456789"
INTEGRATIONS = f"integrations:\n  - {{name: scale, source: native, token: {TOKEN}, rate_limit_per_minute: 100000000}}\n"


def test_three_workers_and_a_sigkill_lose_nothing_and_count_nothing_twice(stack_factory: Any) -> None:
    events = alert_histories(seed=4, aggregates=2000, mean_events=9)
    delivered = deliveries(events, seed=5, duplicate_rate=0.1)
    assert len(delivered) >= 20000, len(delivered)
    expected = expected_incidents(events, "scale")

    stack: Stack = stack_factory(INTEGRATIONS, partitions=8)
    stack.start_gateway()
    workers = [stack.start_worker(i) for i in range(3)]

    statuses: dict[int, int] = {}
    poster = threading.Thread(
        target=lambda: statuses.update(post_all(f"{stack.gateway_url}/v1/events/{TOKEN}", [e.body for e in delivered]))
    )
    poster.start()
    time.sleep(8)  # mid-stream
    workers[1].stop(signal.SIGKILL)
    time.sleep(4)
    stack.start_worker(1)
    poster.join()
    assert statuses.get(202) == len(delivered), statuses

    def settled(records: list[Any]) -> bool:
        return latest_by_key(records) == expected

    records = read_topic(stack.bootstrap, f"{stack.namespace}.incidents", settled, timeout=240)
    got = latest_by_key(records)
    assert got == expected, differences(got, expected)
