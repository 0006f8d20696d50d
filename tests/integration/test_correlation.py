"""Correlation end to end: 5,000 changes and 5,000 alert events through the gateway, with 1 and with 3 workers.

Both runs must give exactly the batch recomputation's live correlations (after retractions),
pair for pair, and the change rows on `incidentflow.metrics` must give its change failure counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, datetime
from typing import Any

import pytest

from incidentflow.domain.events import AlertEvent, ChangeEvent
from tests.integration.conftest import Stack, read_topic
from tests.integration.helpers import post_each
from tests.oracle import (
    live_correlations,
    recompute_change,
    recompute_change_failure,
    recompute_correlations,
    recompute_history,
    recompute_incident,
    recompute_report,
)
from tests.scenario import Posted, correlated_traffic, shuffled_with_duplicates

pytestmark = pytest.mark.integration

TOKENS = ("corr-alerts-a-token-0123456789", "corr-alerts-b-token-0123456789", "corr-deploys-token-0123456789")
NAMES = {TOKENS[0]: "alerts-a", TOKENS[1]: "alerts-b", TOKENS[2]: "deploys"}
INTEGRATIONS = f"""integrations:
  - {{name: alerts-a, source: native, token: {TOKENS[0]}, rate_limit_per_minute: 100000000}}
  - {{name: alerts-b, source: native, token: {TOKENS[1]}, rate_limit_per_minute: 100000000,
      correlation: {{lookback_minutes: 30, lookahead_minutes: 10}}}}
  - {{name: deploys, source: native, token: {TOKENS[2]}, rate_limit_per_minute: 100000000}}
"""
WINDOWS = {"alerts-a": (60.0, 5.0), "alerts-b": (30.0, 10.0)}


def _event(item: Posted) -> AlertEvent | ChangeEvent:
    integration = NAMES[item.token]
    at = datetime.fromisoformat(item.body["occurred_at"])
    if "change_key" in item.body:
        fields = {k: v for k, v in item.body.items() if k not in ("change_key", "occurred_at")}
        return ChangeEvent(**fields, change_id=f"{integration}:{item.body['change_key']}", integration=integration,
                           source="native", occurred_at=at, received_at=at)  # fmt: skip
    fields = {k: v for k, v in item.body.items() if k != "occurred_at"}
    return AlertEvent(**fields, aggregate_id=f"{integration}:{item.body['external_aggregate_key']}",
                      integration=integration, source="native", occurred_at=at, received_at=at)  # fmt: skip


def expected(
    posted: list[Posted],
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str, str], tuple[int, int, int, int]],
           dict[tuple[str, str], dict[str, Any]]]:  # fmt: skip
    alerts: dict[str, list[AlertEvent]] = {}
    changes: dict[str, list[ChangeEvent]] = {}
    for item in posted:
        event = _event(item)
        if isinstance(event, AlertEvent):
            alerts.setdefault(event.aggregate_id, []).append(event)
        else:
            changes.setdefault(event.change_id, []).append(event)
    incidents = [i for events in alerts.values() if (i := recompute_incident(events)) is not None]
    folded = [recompute_change(events) for events in changes.values()]
    correlations = recompute_correlations(incidents, folded, WINDOWS)
    report = recompute_report(incidents, folded, correlations, *REPORT_RANGE)
    history = recompute_history(folded, incidents)
    return correlations, recompute_change_failure(folded, correlations, history), report


def change_rows(records: list[Any]) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    latest = {r.key.decode(): json.loads(r.value) for r in records}
    return {
        (row["service"], row["env"], row["day"]): (
            row["changes"],
            row["failed_changes"],
            row["reworked_changes"],
            row["rollbacks"],
        )  # fmt: skip
        for row in latest.values()
        if row["metric"] == "changes" and row["changes"]
    }


TRAFFIC = correlated_traffic(seed=21, changes=5000, alert_events=5000, tokens=TOKENS)
DELIVERED = shuffled_with_duplicates(TRAFFIC, seed=22, duplicate_rate=0.1)
REPORT_RANGE = (date(2026, 10, 3), date(2026, 10, 9))
EXPECTED, EXPECTED_FAILURES, EXPECTED_REPORT = expected(TRAFFIC)


def test_the_scenario_is_rich_enough() -> None:
    changes = {item.body["change_key"] for item in TRAFFIC if "change_key" in item.body}
    alerts = [item for item in TRAFFIC if "action" in item.body]
    assert len(changes) >= 5000 and len(alerts) >= 5000
    assert len(EXPECTED) >= 1000, len(EXPECTED)
    assert sum(failed for _, failed, _, _ in EXPECTED_FAILURES.values()) >= 500
    # rollbacks (by kind and by version) that fail the change before them, with or without an incident, and
    # deployments made while an incident of their service and env was open
    assert sum(rollbacks for *_, rollbacks in EXPECTED_FAILURES.values()) >= 150
    reworked = sum(rework for _, _, rework, _ in EXPECTED_FAILURES.values())
    assert 2 * sum(rollbacks for *_, rollbacks in EXPECTED_FAILURES.values()) <= reworked < len(TRAFFIC)
    assert any(rank > 3 for rank in (c["rank"] for c in EXPECTED.values()))
    assert len({(c["matched_labels"].get("cluster")) for c in EXPECTED.values()}) > 2
    # failed changes that recovered in the report's range, and failed ones still waiting for an incident
    recovered = sum(r["recoveries"] for r in EXPECTED_REPORT.values())
    assert 100 <= recovered < sum(r["failed_changes"] for r in EXPECTED_REPORT.values())


@pytest.mark.parametrize("workers", [1, 3])
def test_live_correlations_equal_the_batch_recomputation(stack_factory: Any, workers: int) -> None:
    stack: Stack = stack_factory(INTEGRATIONS, partitions=8)
    stack.start_gateway()
    for index in range(workers):
        stack.start_worker(index)
    statuses: dict[int, int] = {}
    requests = [(f"{stack.gateway_url}/v1/events/{item.token}", item.body) for item in DELIVERED]
    poster = threading.Thread(target=lambda: statuses.update(post_each(requests)))
    poster.start()
    poster.join()
    assert statuses.get(202) == len(DELIVERED), statuses

    started = time.monotonic()
    records = read_topic(stack.bootstrap, f"{stack.namespace}.correlations",
                         lambda rs: live_correlations([json.loads(r.value) for r in rs]) == EXPECTED, timeout=420)  # fmt: skip
    got = live_correlations([json.loads(r.value) for r in records])
    missing = sorted(set(EXPECTED) - set(got))
    extra = sorted(set(got) - set(EXPECTED))
    wrong = [(pair, got[pair], EXPECTED[pair]) for pair in EXPECTED if pair in got and got[pair] != EXPECTED[pair]]
    if got != EXPECTED:  # a short message, the stage that stopped last: CI shows the end of the output
        pytest.fail(f"live correlations differ: {len(missing)} missing {missing[:3]}, {len(extra)} extra "
                    f"{extra[:3]}, {len(wrong)} wrong {wrong[:1]}; of {len(EXPECTED)} expected and {len(got)} got; "
                    f"committed by the group: {stack.progress()}")  # fmt: skip
    assert any(json.loads(r.value)["retracted"] for r in records), "the scenario should make the pipeline retract"
    assert all(r.key.decode() == json.loads(r.value)["aggregate_id"] for r in records)  # keyed by aggregate_id

    rows = read_topic(stack.bootstrap, f"{stack.namespace}.metrics",
                      lambda rs: change_rows(rs) == EXPECTED_FAILURES, timeout=max(60.0, 420 - (time.monotonic() - started)))  # fmt: skip
    assert change_rows(rows) == EXPECTED_FAILURES

    # `incidentflow report` over a range of days, against the same recomputation
    def report() -> dict[str, Any]:
        env = {
            **os.environ,
            "INCIDENTFLOW_KAFKA_BOOTSTRAP": stack.bootstrap,
            "INCIDENTFLOW_TOPIC_NAMESPACE": stack.namespace,
        }
        out = subprocess.run([sys.executable, "-m", "incidentflow.cli", "report", "--from", REPORT_RANGE[0].isoformat(),
                              "--to", REPORT_RANGE[1].isoformat(), "--json"], env=env, capture_output=True, text=True,
                             check=True, timeout=60)  # fmt: skip
        return {(s.pop("service"), s.pop("env")): s for s in json.loads(out.stdout)["services"]}

    # from the rows' sketches: within 1%
    quantiles = (
        "median_seconds",
        "p90_seconds",
        "lead_time_median_seconds",
        "lead_time_p90_seconds",
        "recovery_median_seconds",
        "recovery_p90_seconds",
    )

    def same(got: dict[str, Any], want: dict[str, Any]) -> bool:
        exact = {k: v for k, v in want.items() if k not in quantiles}
        return {k: v for k, v in got.items() if k not in quantiles} == pytest.approx(exact) and all(
            (got[k] is None) == (want[k] is None) and (want[k] is None or got[k] == pytest.approx(want[k], rel=0.01))
            for k in quantiles
        )

    def settled(got: dict[str, Any]) -> bool:
        return got.keys() == EXPECTED_REPORT.keys() and all(same(got[k], v) for k, v in EXPECTED_REPORT.items())

    deadline = time.monotonic() + 120
    got_report = report()
    while not settled(got_report) and time.monotonic() < deadline:
        time.sleep(2)
        got_report = report()
    assert got_report.keys() == EXPECTED_REPORT.keys()
    for service, figures in EXPECTED_REPORT.items():
        assert same(got_report[service], figures), (service, got_report[service], figures)


def test_redelivered_webhooks_write_no_second_record(stack_factory: Any) -> None:
    stack: Stack = stack_factory(INTEGRATIONS, partitions=2)
    stack.start_gateway()
    stack.start_worker(0)
    labels = {"service": "orders", "env": "prod"}
    pair = [
        (TOKENS[0], {"event_id": "r-open", "external_aggregate_key": "r-1", "action": "open",
                     "occurred_at": "2026-11-01T12:00:00Z", "labels": labels}),
        (TOKENS[2], {"event_id": "r-done", "change_key": "r-deploy", "status": "done",
                     "occurred_at": "2026-11-01T11:50:00Z", "labels": labels}),
    ]  # fmt: skip
    requests = [(f"{stack.gateway_url}/v1/events/{token}", body) for token, body in pair]
    assert post_each(requests) == {202: 2}
    topic = f"{stack.namespace}.correlations"
    first = read_topic(stack.bootstrap, topic, lambda rs: len(rs) >= 1, timeout=60)
    assert [json.loads(r.value)["change_id"] for r in first] == ["deploys:r-deploy"]

    assert post_each(requests * 3) == {202: 6}  # the senders retry, three times each
    marker = [(f"{stack.gateway_url}/v1/events/{TOKENS[0]}", {**pair[0][1], "event_id": "m", "external_aggregate_key": "m",
                                                              "labels": {"service": "marker"}})]  # fmt: skip
    assert post_each(marker) == {202: 1}
    read_topic(stack.bootstrap, f"{stack.namespace}.incidents", lambda rs: any(r.key == b"alerts-a:m" for r in rs))
    time.sleep(3)  # the redeliveries were posted before the marker and have gone through every stage
    records = read_topic(stack.bootstrap, topic, lambda rs: False, timeout=5)
    assert len(records) == 1, [json.loads(r.value) for r in records]
    assert json.loads(records[0].value)["correlation_id"] == json.loads(first[0].value)["correlation_id"]
