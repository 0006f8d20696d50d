"""Writes bench/TRUST.md from the figures the trust suite left in bench/results/.

    .venv/bin/python bench/trust_report.py      # make trust and make soak run it

Every fault scenario's pass criterion and figures (bench/results/trust-*.json, written by
tests/trust/test_faults.py when INCIDENTFLOW_TRUST_RESULTS is set), the load search
(bench/results/load.json) and the soak (bench/results/soak.json). Sections without results say so.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/results"

CRITERIA = {
    "worker-sigkill": "A worker is SIGKILLed three times during the run and restarted each time.",
    "scale-1-3-1": "One worker, then three (two join during ingest), then one again (two leave during ingest).",
    "broker-restart": "The broker is stopped for 11 s during ingest and started again: the gateway answers 503 "
    "(never 202) while it is away, and every request answered 202 is on the raw topic.",
    "gateway-sigkill": "The gateway is SIGKILLed with requests in flight and started again on its port: every "
    "request answered 202 is on the raw topic; retried requests are deduplicated downstream.",
    "poison": "Five kinds of poison record on every partition of every input topic during ingest: each is "
    "dead-lettered with its reason and origin, everything else is processed.",
    "worker-sigstop": "A worker is frozen (SIGSTOP) for 20 s, past its 6-second session, while the other takes its "
    "partitions, then thawed with a batch in hand: it stops (exit status 75) before it writes any of it, and is "
    "started again as a supervisor would.",
    "worker-store-deleted": "A worker is stopped, its RocksDB directory deleted, and started again: every table is "
    "restored from its changelog.",
    "worker-store-corrupted": "A worker is stopped and its RocksDB files damaged (half garbled whole, half inside "
    "their data blocks): found on opening or at the first damaged read (the worker stops; started again by the test "
    "as a supervisor would), set aside and restored from the changelogs.",
    "burst": "As many webhooks as ten times the sustained rate (bench/results/load.json) for a minute, sent by 128 "
    "senders at once to one gateway and one worker: every answer 202/204, or 429/503 with Retry-After; every 202 "
    "processed; the worker's and gateway's peak memory bounded.",
    "upgrade": "Gateway and workers of the last release tag; halfway, each worker in turn is replaced by one of "
    'this code on its data directory (CHANGELOG.md, "Upgrading"); then `incidentflow replay` into a new '
    "namespace gives the same outputs.",
    "cluster-leader-sigkill": "Three brokers (replication 3, min.insync.replicas 2): the broker leading most of the "
    "raw topic's partitions is killed (SIGKILL) during ingest and started again 12 s later.",
    "cluster-controller-sigkill": "Three brokers: the active controller is killed (SIGKILL) during ingest and "
    "started again 12 s later.",
    "cluster-rolling-restart": "Three brokers restarted one after the other during ingest (SIGTERM, start, every "
    "replica back in sync before the next).",
    "cluster-broker-sigstop": "Three brokers: the one leading most raw partitions is frozen (SIGSTOP) for 20 s, past "
    "its session with the controllers and the workers' sessions, then thawed.",
    "cluster-two-down": "Three brokers, two killed: fewer in-sync replicas than the minimum, so the gateway answers "
    "503 (never 202) until one returns; every request answered 202 is on the raw topic.",
}
COMMON = ("Pass: the incidents, live correlations and metric rows on Kafka equal the independent batch "
          "recomputation (lost = 0, double-counted = 0, wrong = 0) and the workers' consumer lag returns to 0.")  # fmt: skip


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def faults() -> list[str]:
    lines = ["## Fault scenarios", "", COMMON, "",
             "    make trust        # INCIDENTFLOW_TRUST=full pytest tests/trust (its short version runs in make test)", "",
             "| scenario | what happens | events | requests (by answer) | lost | double-counted | wrong | lag back to 0 | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    details = []
    for name, criterion in CRITERIA.items():
        result = load(f"trust-{name}.json")
        if result is None:
            lines.append(f"| {name} | {criterion} | not run | | | | | | |")
            continue
        # A result recorded from a run's end state after the test was stopped has no answers or duration.
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.get("statuses", {}).items())) or "not recorded"
        took = f" ({result['seconds']:.0f} s)" if "seconds" in result else ""
        lines.append(f"| {name} | {criterion} | {result['events']:,} | {statuses} | {result['lost']} | "
                     f"{result['double_counted']} | {result['wrong']} | {'yes' if result['lag_back_to_zero'] else 'NO'} | "
                     f"{'pass' if result['passed'] else 'FAIL'}{took} |")  # fmt: skip
        extra = {k: v for k, v in result.items() if k not in {"scenario", "events", "statuses", "lost", "double_counted",
                                                               "wrong", "lag_back_to_zero", "passed", "seconds"}}  # fmt: skip
        details.append(f"- **{name}**: `{json.dumps(extra)}`")
    return [*lines, "", "Figures of each scenario (outputs: per output, expected count and lost / double / wrong):", "",
            *details, ""]  # fmt: skip


def _drained(step: dict[str, Any]) -> str:
    if not step["drained"]:
        return "no"
    return f"in {step['drain_seconds']:.1f} s" if step.get("drain_seconds") is not None else "yes"


def load_section() -> list[str]:
    result = load("load.json")
    lines = ["## Load (open model)", ""]
    if result is None:
        return [*lines, "Not run yet: `make trust` runs `bench/load.py --search`.", ""]
    lines += [f"    {result['command']}", "",
              f"Highest rate sustained by the whole pipeline ({result['workers']} worker, gateway, broker and the "
              f"load generator on this machine): **{result['sustained_rate']:.1f} requests/s** — every request "
              "answered as it should (202, or 204 for an event type the product does not read), gateway p99 under 100 ms, 202 → incident record p99 under 1 s, every stage drained (lag 0) "
              f"within {result.get('drain_bound_seconds', 60):.0f} s after each {result['steps'][0]['seconds']:.0f}-second step.", "",
              "| offered /s | achieved /s | gateway p50 / p95 / p99 / max ms | 202 → incident p50 / p99 ms | answers | drained | sustained |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in result["steps"]:
        lat, e2e = s["latency_ms"], s["e2e_ms"]
        lines.append(f"| {s['offered_rate']:.1f} | {s['achieved_rate']:.1f} | {lat['p50']:.0f} / {lat['p95']:.0f} / "
                     f"{lat['p99']:.0f} / {lat['max']:.0f} | {e2e.get('p50', float('nan')):.0f} / "
                     f"{e2e.get('p99', float('nan')):.0f} | {s['statuses']} | {_drained(s)} | "
                     f"{'yes' if s['sustained'] else 'no'} |")  # fmt: skip
    return [*lines, "", f"Measured {result['date']} on {result['machine']}.", ""]


def _share_of_sustained(rate: float) -> str:
    """The soak's rate as a share of the load section's sustained rate (the soak may predate that search)."""
    found = load("load.json")
    if not found or not found.get("sustained_rate"):
        return ""
    return f" ({rate / found['sustained_rate']:.0%} of the sustained rate above)"


def soak_section() -> list[str]:
    result = load("soak.json")
    lines = ["## Soak", ""]
    if result is None:
        return [*lines, "Not run yet: `make soak` (30 minutes at half the sustained rate).", ""]
    lines += [f"    {result['command']}", "",
              f"{result['minutes']} minutes at {result['rate']:.1f} requests/s{_share_of_sustained(result['rate'])}: "
              f"{result['accepted']:,} of "
              f"{result['offered']:,} requests accepted; lag back to zero after the run: "
              f"{'yes' if result['drained'] else 'NO'}; result: **{'pass' if result['passed'] else 'FAIL'}**.", "",
              "Pass: no upward trend — memory that fills up to a bound by design (the worker's RocksDB cache, at "
              f"{result.get('store_mib', 256)} MiB; the broker's JVM heap, resident from the start) is kept out: after "
              f"{result.get('warm_up_minutes', 5)} minutes of warm-up (until the traffic has run one state horizon) and once a worker's cache is full, at least 15 minutes of steady state in which the "
              "least-squares slopes of resident memory and of open descriptors each project less than 10% growth "
              "per hour (or less than 5 MiB and 10 descriptors an hour: noise), and the cache within its budget.", "",
              "| process | RSS first / last MiB | RocksDB cache last / budget MiB | steady from minute (minutes) | RSS slope MiB/h (growth/h) | fds first / last | fds slope /h (growth/h) | result |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, v in result["processes"].items():
        cache = f"{v['cache_last_mib']} / {v['cache_budget_mib']}" if v.get("cache_budget_mib") else "-"
        lines.append(f"| {name} | {v['rss_first_mib']} / {v['rss_last_mib']} | {cache} | "
                     f"{v['steady_from_minute']} ({v['steady_minutes']}) | "
                     f"{v['rss_slope_mib_per_hour']} ({v['rss_growth_per_hour']:.1%}) | "
                     f"{v['fds_first']} / {v['fds_last']} | {v['fds_slope_per_hour']} ({v['fds_growth_per_hour']:.1%}) | "
                     f"{'pass' if v['pass'] else 'FAIL'} |")  # fmt: skip
    lags = result.get("lag_by_minute")
    if lags:
        known = [lag for lag in lags if lag is not None]
        lines += ["", f"Consumer lag of the worker (every input partition, records) after each minute: "
                      f"{', '.join('?' if lag is None else f'{lag:.0f}' for lag in lags)}"
                      f"{f' (most {max(known):.0f})' if known else ''}."]  # fmt: skip
    return [*lines, "", f"Measured {result['date']} on {result['machine']}.", ""]


def main() -> int:
    text = [
        "# Trust report",
        "",
        "Generated by `bench/trust_report.py` from the last run of each part; do not edit by hand.",
        f"Written {datetime.now(UTC).isoformat(timespec='seconds')} on {platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
        "Traffic: `tests/trust/traffic.py` (seeded), native alerts and changes, Sleuth, Uptrends, Flashduty "
        "alerts and changes, Elven, Prometheus Alertmanager (with its repeated notifications, lost firing "
        "notifications and alerts that fire again), PagerDuty (with redeliveries and event types answered "
        "204), and GitHub and GitLab repositories (pushes, deployments that do and do not deploy, a sha pushed "
        "again from another branch), with reopens, heartbeats, late and out-of-order events, 10% duplicate "
        "deliveries in shuffled order, changes that do and do not correlate, changes with and without a "
        "commit time, and rollbacks (by kind and by version), hotfixes and reverts. Expectation: `tests/trust/expected.py` over `tests/oracle.py`, which shares no code with "
        "the streaming path: incidents, live correlations, and the metric rows of time to restore, changes, "
        "failed, reworked and rolled-back changes, lead time (GitHub and GitLab deployments' joined with their "
        "pushes) and failed deployment recovery time.",
        "",
        *faults(),
        *load_section(),
        *soak_section(),
    ]
    (REPO / "bench/TRUST.md").write_text("\n".join(text))
    print(f"wrote {REPO / 'bench/TRUST.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
