"""`incidentflow demo`: post real-looking Elven webhooks and deploys (a rollback and a hotfix among them), a GitHub
deployment and the push it ships, and show incidents, correlations, MTTR, lead time and the five DORA keys."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka import AIOKafkaConsumer

from incidentflow.config import Settings
from incidentflow.domain.report import report
from incidentflow.sources.github import sign
from incidentflow.tools.report import read_rows, render
from incidentflow.topics import Topics


def _webhook(key: str, action: str, title: str, severity: str, service: str) -> dict[str, object]:
    return {
        "title": title,
        "description": f"{title}: synthetic check failing from 3 regions",
        "external_aggregate_key": key,
        "action": action,
        "severity": severity,
        "tags": [{"name": "service", "value": service}, {"name": "team", "value": "sre"}],
    }


def _deploy(key: str, service: str, minutes_ago: float, status: str, version: str | None = None,
            kind: str | None = None) -> dict[str, object]:  # fmt: skip
    at = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    committed = (datetime.now(UTC) - timedelta(minutes=minutes_ago + 95)).isoformat().replace("+00:00", "Z")
    body: dict[str, object] = {"event_id": f"{key}-{status}", "change_key": key, "status": status, "occurred_at": at,
                               "committed_at": committed, "title": f"deploy {service} {version or ''}".rstrip(),
                               "labels": {"service": service}}  # fmt: skip
    if version is not None:
        body["version"] = version
    if kind is not None:
        body["kind"] = kind
    return body


GITHUB_SECRET = "demo-github-webhook-secret"  # noqa: S105  # the local demo's, in its integrations file
"""The demo GitHub integration's webhook secret (deploy/demo/integrations.yaml)."""


def _iso_ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _github(run: str) -> list[tuple[str, dict[str, object]]]:
    """GitHub webhooks of inventory's repository: main created 3 h ago and deployed, then a deployment of the
    next sha whose push (commits 50 and 40 minutes ago) is posted after it, as webhooks may arrive."""
    repository = {"name": "inventory", "full_name": f"acme/inventory-{run}"}
    first, second = f"{run}a1" + "0" * 32, f"{run}b2" + "0" * 32

    def push(before: str, after: str, *minutes: float) -> dict[str, object]:
        commits = [
            {"id": f"{after[:8]}{i}", "timestamp": _iso_ago(m), "message": "change"} for i, m in enumerate(minutes)
        ]
        return {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "commits": commits,
            "repository": repository,
        }

    def status(number: int, sha: str, state: str, minutes: float) -> dict[str, object]:
        return {"action": "created", "repository": repository,
                "deployment": {"id": number, "sha": sha, "ref": "main", "environment": "demo", "payload": {}},
                "deployment_status": {"id": number * 10 + len(state), "state": state, "created_at": _iso_ago(minutes)}}  # fmt: skip

    number = int(run, 16)
    return [("push", push("0" * 40, first, 180)), ("deployment_status", status(number, first, "success", 150)),
            ("deployment_status", status(number + 1, second, "in_progress", 12)),
            ("deployment_status", status(number + 1, second, "success", 10)), ("push", push(first, second, 50, 40))]  # fmt: skip


def _show_correlation(record: dict[str, object]) -> str:
    state = "RETRACTED" if record["retracted"] else f"rank {record['rank']}"
    return (
        f"  suspect  {record['change_id']:<40} for {record['aggregate_id']:<40} {state:<9} "
        f"score={record['score']} change {record['delta_seconds']:.0f}s before the open, "
        f"matched {record['matched_labels']}"
    )


def _show(incident: dict[str, object]) -> str:
    ttr = incident.get("time_to_restore_seconds")
    ttr_text = f"{ttr:.1f}s" if isinstance(ttr, float | int) else "-"
    return (
        f"  incident {incident['aggregate_id']:<40} {incident['status']:<9} severity={incident['severity']!s:<9} "
        f"episodes={len(incident['episodes'])}  time_to_restore={ttr_text}"  # type: ignore[arg-type]
    )


async def _demo(settings: Settings, gateway_url: str, worker_url: str, token: str, native_token: str,
                github_token: str) -> int:  # fmt: skip
    run = uuid.uuid4().hex[:6]
    checkout, payments = f"checkout-latency-{run}", f"payments-5xx-{run}"
    # checkout's deploy causes the latency incident; search deploys v88, then v89, then v88 again:
    # a rollback found from the versions, which fails v89 without any incident
    deploys = [_deploy(f"checkout-v231-{run}", "checkout", 4, "processing", "v2.31"),
               _deploy(f"checkout-v231-{run}", "checkout", 3, "done", "v2.31"),
               _deploy(f"search-v88-{run}", "search", 30, "done", f"v88-{run}"),
               _deploy(f"search-v89-{run}", "search", 20, "done", f"v89-{run}"),
               _deploy(f"search-back-to-v88-{run}", "search", 10, "done", f"v88-{run}")]  # fmt: skip
    # payments ships a hotfix while its incident is open: rework
    hotfix = _deploy(f"payments-hotfix-{run}", "payments", 0, "done", f"v7.1.1-{run}", kind="hotfix")
    steps = [
        (_webhook(checkout, "alarmed", "Checkout p99 latency over 2s", "high", "checkout"), 0.0),
        (_webhook(payments, "alarmed", "Payments API 5xx rate over 5%", "critical", "payments"), 1.0),
        (_webhook(checkout, "alarmed", "Checkout p99 latency over 2s", "critical", "checkout"), 1.0),
        (_webhook(checkout, "resolved", "Checkout p99 latency over 2s", "critical", "checkout"), 2.0),
    ]
    topics = Topics(settings.topic_namespace)
    consumer = AIOKafkaConsumer(
        topics.incidents,
        topics.correlations,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    try:
        # Wait until the consumer has its position so no record posted after this is missed.
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        async with httpx.AsyncClient(timeout=30.0) as client:
            print(f"posting {len(deploys)} deploy events to {gateway_url}/v1/events/<token>")
            for body in deploys:
                response = await client.post(f"{gateway_url}/v1/events/{native_token}", json=body)
                print(f"  {body['status']:<10} {body['change_key']:<26} -> {response.status_code} {response.text}")
            print(f"posting {len(steps)} Elven webhooks to {gateway_url}/v1/ingest/elven/<token>")
            for body, pause in steps:
                await asyncio.sleep(pause)
                response = await client.post(f"{gateway_url}/v1/ingest/elven/{token}", json=body)
                print(
                    f"  {body['action']:<8} {body['external_aggregate_key']:<26} -> {response.status_code} {response.text}"
                )
            response = await client.post(f"{gateway_url}/v1/events/{native_token}", json=hotfix)
            print(f"posting a hotfix while payments' incident is open -> {response.status_code} {response.text}")
            print(f"posting GitHub webhooks to {gateway_url}/v1/ingest/github/<token> (signed; the second deployment"
                  " before the push it ships):")  # fmt: skip
            for event, payload in _github(run):
                raw = json.dumps(payload).encode()
                headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": sign(GITHUB_SECRET, raw),
                           "Content-Type": "application/json"}  # fmt: skip
                response = await client.post(f"{gateway_url}/v1/ingest/github/{github_token}", content=raw,
                                             headers=headers)  # fmt: skip
                what = payload.get("deployment_status") or {"state": f"{len(payload['commits'])} commit(s)"}  # type: ignore[arg-type]
                print(f"  {event:<18} {what['state']:<12} -> {response.status_code} {response.text}")  # type: ignore[index]
            print("incidents and suspect changes, from the incidents and correlations topics:")
            wanted = {f"demo-elven:{checkout}", f"demo-elven:{payments}"}
            latest: dict[str, dict[str, object]] = {}
            deadline = time.monotonic() + 60
            suspects = 0
            while time.monotonic() < deadline and not (_settled(latest, checkout) and suspects):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        value = json.loads(record.value or b"{}")
                        if value.get("aggregate_id") not in wanted:
                            continue
                        if record.topic == topics.correlations:
                            suspects += 1
                            print(_show_correlation(value))
                        else:
                            latest[str(value["aggregate_id"])] = value
                            print(_show(value))
            if not _settled(latest, checkout):
                print("the worker did not publish the incidents within 60 s; is it running?")
                return 1
            print(
                f"The five DORA keys (deployment frequency, lead time, change failure ratio with rolled-back changes, "
                f"deployment rework rate with the rollbacks, time to restore and failed deployment recovery time) and "
                f"open incidents per service and env, from the worker's {worker_url}/metrics:"
            )
            shown = ("incidentflow_mttr_seconds", "incidentflow_time_to_restore_seconds", "incidentflow_incidents_open",
                     "incidentflow_deployment_frequency_per_day", "incidentflow_lead_time_seconds",
                     "incidentflow_change_failure_ratio", "incidentflow_rework_ratio", "incidentflow_rollbacks",
                     "incidentflow_failed_deployment_recovery_seconds")  # fmt: skip
            # The verdicts reach the change series a moment after the correlation and the rollback:
            # wait until checkout's deploy and search's v89 count as failed, and payments' hotfix as rework.
            waited = ('incidentflow_change_failure_ratio{env="demo",service="checkout",window="1d"}',
                      'incidentflow_change_failure_ratio{env="demo",service="search",window="1d"}',
                      'incidentflow_rework_ratio{env="demo",service="payments",window="1d"}')  # fmt: skip
            for _ in range(60):
                lines = [
                    line for line in (await client.get(f"{worker_url}/metrics")).text.splitlines()
                    if line.startswith(shown) and ('window="1d"' in line or "window" not in line)
                ]  # fmt: skip
                counted = all(
                    any(line.startswith(name) and float(line.rsplit(" ", 1)[1]) > 0 for line in lines)
                    for name in waited
                )
                if all(any(line.startswith(name) for line in lines) for name in shown) and counted:
                    break
                await asyncio.sleep(0.5)
            for line in lines:
                print(f"  {line}")
            today = datetime.now(UTC).date()
            # inventory's second deployment has its lead time once the push it ships is joined to it
            for _ in range(60):
                reports = report(await read_rows(settings), today - timedelta(days=1), today, service="inventory")
                if reports and reports[0].lead_times == 2:
                    break
                await asyncio.sleep(0.5)
            for found in reports:
                print(f"lead time of inventory's {found.lead_times} GitHub deployments, from the pushes each one ships: "
                      f"mean {found.lead_time_mean_seconds or 0:.0f}s, max {found.lead_time_max_seconds or 0:.0f}s "
                      "(the second one's push came after it: joined when it arrived)")  # fmt: skip
            print("incidentflow report for today, from the daily rows of the metrics topic:")
            print(render(report(await read_rows(settings), today, today), today, today))
    finally:
        await consumer.stop()
    return 0


def _settled(latest: dict[str, dict[str, object]], checkout: str) -> bool:
    incident = latest.get(f"demo-elven:{checkout}")
    return len(latest) == 2 and incident is not None and incident["status"] == "resolved"


def run_demo(settings: Settings, gateway_url: str, worker_url: str, token: str, native_token: str,
             github_token: str) -> int:  # fmt: skip
    return asyncio.run(_demo(settings, gateway_url, worker_url, token, native_token, github_token))
