"""202 means the event is in Kafka: the broker is really stopped under a live gateway, then restarted."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from incidentflow.domain.envelope import RawEnvelope
from tests.integration.conftest import OwnBroker, Stack, read_topic

pytestmark = pytest.mark.integration

TOKEN = "durable-elven-token-0123456789"
INTEGRATIONS = f"integrations:\n  - {{name: durable, source: elven, token: {TOKEN}, rate_limit_per_minute: 1000000}}\n"
BOUND = 2.0


@dataclass
class Answer:
    sent_at: float
    seconds: float
    status: int
    request_id: str | None
    retry_after: str | None


def post_until(url: str, stop: threading.Event, answers: list[Answer], worker: int) -> None:
    n = 0
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            n += 1
            body = {"action": "alarmed", "external_aggregate_key": f"w{worker}-{n}", "title": "durability"}
            started = time.monotonic()
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError:
                continue
            data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            answers.append(Answer(started, time.monotonic() - started, response.status_code,
                                  data.get("request_id"), response.headers.get("retry-after")))  # fmt: skip


def test_broker_stopped_mid_run_gives_503s_and_exactly_the_accepted_events(
    own_broker: OwnBroker, stack_factory: Any
) -> None:
    stack: Stack = stack_factory(INTEGRATIONS, partitions=2)
    stack.bootstrap = own_broker.bootstrap
    stack.start_gateway(INCIDENTFLOW_PUBLISH_TIMEOUT_SECONDS=str(BOUND), INCIDENTFLOW_RETRY_AFTER_SECONDS="3")
    url = f"{stack.gateway_url}/v1/ingest/elven/{TOKEN}"
    answers: list[Answer] = []
    stop = threading.Event()
    threads = [threading.Thread(target=post_until, args=(url, stop, answers, i)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        own_broker.stop()
        stopped_at = time.monotonic()
        time.sleep(8)
        restart_at = time.monotonic()
        own_broker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            a.status == 202 and a.sent_at > restart_at for a in answers[-50:]
        ):
            time.sleep(0.5)
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join()

    while_down = [a for a in answers if stopped_at + BOUND < a.sent_at and a.sent_at + a.seconds < restart_at]
    assert while_down, "no request was answered while the broker was down"
    assert {a.status for a in while_down} == {503}, stack.logs()[-3000:]
    assert all(a.retry_after == "3" for a in answers if a.status == 503)
    assert max(a.seconds for a in answers if a.status == 503) < BOUND + 1.0
    assert any(a.status == 202 and a.sent_at > restart_at for a in answers), "no 202 after the broker came back"

    accepted = {a.request_id for a in answers if a.status == 202}
    refused = {a.request_id for a in answers if a.status != 202}
    records = read_topic(own_broker.bootstrap, f"{stack.namespace}.raw", lambda r: len(r) >= len(accepted), timeout=60)
    stored = [RawEnvelope.model_validate_json(r.value).request_id for r in records]
    assert len(stored) == len(set(stored)), "a record was stored twice"
    # Every 202 is stored. A request answered 503 may be stored too (issue 7): its write can reach the
    # broker with the acknowledgement lost as it goes away, or once it is back; the client's retry is
    # then a second copy, which the worker's deduplication removes (the trust suite counts them as
    # `raw_records_without_202` and proves the end state exact).
    assert accepted <= set(stored), (f"missing {len(accepted - set(stored))} of {len(accepted)} accepted "
                                     f"({len(set(stored) & refused)} refused ones stored)")  # fmt: skip
