"""Soak: constant-rate load for a long time, memory and file descriptors of every process sampled each minute.

    .venv/bin/python bench/soak.py                    # half the sustained rate of bench/results/load.json, 30 min
    .venv/bin/python bench/soak.py --rate 40 --minutes 30 --store-mib 256

The load is bench/load.py's (open model, every source mixed, probes for the end-to-end delay),
sent in one-minute steps. After each minute the resident memory (VmRSS) and open file
descriptors of the gateway, the worker and the broker are read from /proc, and the worker's
shared RocksDB cache (`incidentflow_store_cache_bytes`, memtables included) and its consumer lag
summed over every input partition from its /metrics.

The worker runs with the product's state horizon (90 days). The traffic's event time runs about
22 days per 20,000 events, so from about the seventh minute on the horizon forgets as much state as
the traffic brings, and what the worker keeps in memory for its histories (each service and env's
deployments and incidents, each repository's pushes, within the horizon) reaches its steady size;
under a horizon longer than the run's event time that state, and the memory, would grow for the
whole run by design. For the same reason every incident of the soak's traffic resolves in the end
(the load search's traffic leaves about half of them open, as the trust suite's does: the worker
keeps an open incident's state, and its place in its history, for as long as it stays open).
Elven's events take the gateway's receive time: once the traffic is past the
horizon from today they are dead-lettered as too late, which the soak does not count against it.

Two processes hold memory that fills up to a bound by design: the worker's RocksDB cache (its
`STORE_MEMORY_MIB`) and the broker's JVM heap (`-Xmx`). Growth up to those bounds is not a leak,
so it is kept out of the trend: the broker's heap is resident from the start (`-Xms` = `-Xmx` and
`-XX:+AlwaysPreTouch`), and the worker's steady state starts once its cache holds 95% of its budget.
The worker runs with a 128 MiB budget (`--store-mib`), which fills within the first minutes at
this rate; the default 256 MiB takes about 23 of them (bench/README.md has that run too).

Pass means: every request answered as it should (202, or 204 for an event type the product does not read); for every process, at least 15 minutes of steady state (after
the warm-up — 5 minutes, or as long as the traffic takes to run one state horizon and a minute
more, 7 at 237 requests/s — and, for a worker, once its cache is full) in which the
least-squares slopes of resident memory and of open descriptors each project less than 10%
growth over an hour (or less than 5 MiB and 10 descriptors an hour: noise); the cache within its
budget; and consumer lag back to zero after the run.

Writes bench/results/soak.json for bench/TRUST.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import httpx
from common import REPO, broker, write_result
from load import CHUNK, Pipeline, Step, report, run_step, span_days

from incidentflow.config import Settings

WARM_UP_MINUTES = 5
"""At least this warm-up, and as long as the traffic takes to run one state horizon (`warm_up`)."""
HORIZON_DAYS = Settings.model_fields["state_horizon_days"].default
STEADY_MINUTES = 15
"""At least this many minutes of steady state for a verdict."""
GROWTH_LIMIT = 0.10
"""Per hour, of the steady state's mean, for memory and descriptors alike..."""
NOISE = {"rss": 5.0, "fds": 10.0}
"""...or these slopes per hour (MiB, descriptors), whichever is larger: one descriptor more for a
minute in a process that holds 15 is not a trend."""
FULL = 0.95
"""A cache at this share of its budget is full."""
BROKER_JAVA_OPTS = "-Xms768m -XX:+AlwaysPreTouch"
"""The whole heap of deploy/kafka's broker (-Xmx768m) resident from the start."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def broker_pid(bootstrap: str) -> int | None:
    """The Kafka java process listening on the bootstrap port (when it runs on this machine)."""
    port = bootstrap.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmdline or "kafka_2.13" in cmdline:
            props = [a for a in cmdline.split("\0") if a.endswith(".properties")]
            text = "".join(Path(p).read_text(errors="replace") for p in props if Path(p).exists())
            if f":{port}" in text:
                return int(entry.name)
    return None


def slope_per_hour(values: list[float]) -> float:
    """Least-squares slope of one sample a minute, per hour."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den * 60


def store_figures(port: int) -> dict[str, float]:
    """A worker's `incidentflow_store_*` and `incidentflow_heap_bytes` samples: cache, memtables, table
    readers and the C heap (in use and kept free) in MiB, SST files."""
    found = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(("incidentflow_store_", "incidentflow_heap_bytes")):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value) / (1 if name.endswith(("_files", "_databases")) else 1024**2)
    return found


def cache_mib(figures: dict[str, float]) -> tuple[float, float]:
    """(usage, budget) of a worker's shared RocksDB cache in MiB."""
    return figures.get("incidentflow_store_cache_bytes", 0.0), figures.get("incidentflow_store_cache_budget_bytes", 0.0)


def warm_up(rate: float) -> int:
    """Minutes of warm-up at this rate: five, or until the traffic's event time has run one state
    horizon and a minute more (from then on the worker's histories forget as much as comes in)."""
    days_per_minute = span_days(CHUNK) / CHUNK * rate * 60
    return max(WARM_UP_MINUTES, math.ceil(HORIZON_DAYS / days_per_minute) + 1)


def steady_from(caches: list[float], budget: float, warm: int) -> int:
    """The first minute of steady state: after the warm-up and, where there is a cache, once it is full."""
    if not budget:
        return warm
    full = next((i for i, c in enumerate(caches) if c >= FULL * budget), len(caches))
    return max(warm, full)


def growth_per_hour(values: list[float]) -> float:
    mean = sum(values) / len(values) if values else 0.0
    return slope_per_hour(values) / mean if mean else 0.0


def flat(values: list[float], noise: float) -> bool:
    """No upward trend: the slope projects less than GROWTH_LIMIT of the mean per hour, or less than `noise`."""
    return growth_per_hour(values) < GROWTH_LIMIT or slope_per_hour(values) < noise


def verdict(
    samples: dict[str, list[tuple[float, int, float]]], budgets: dict[str, float], warm: int
) -> dict[str, dict[str, float | bool]]:
    out: dict[str, dict[str, float | bool]] = {}
    for name, series in samples.items():
        caches = [c for _, _, c in series]
        start = steady_from(caches, budgets.get(name, 0.0), warm)
        memory = [m for m, _, _ in series][start:]
        descriptors = [float(f) for _, f, _ in series][start:]
        memory_growth, fd_growth = growth_per_hour(memory), growth_per_hour(descriptors)
        out[name] = {
            "rss_first_mib": round(series[0][0], 1), "rss_last_mib": round(series[-1][0], 1),
            "cache_last_mib": round(caches[-1], 1), "cache_budget_mib": round(budgets.get(name, 0.0), 1),
            "steady_from_minute": start + 1, "steady_minutes": len(memory),
            "rss_steady_first_mib": round(memory[0], 1) if memory else 0.0,
            "rss_slope_mib_per_hour": round(slope_per_hour(memory), 1), "rss_growth_per_hour": round(memory_growth, 3),
            "fds_first": series[0][1], "fds_last": series[-1][1],
            "fds_steady_first": int(descriptors[0]) if descriptors else 0,
            "fds_slope_per_hour": round(slope_per_hour(descriptors), 1), "fds_growth_per_hour": round(fd_growth, 3),
            "pass": len(memory) >= STEADY_MINUTES and flat(memory, NOISE["rss"]) and flat(descriptors, NOISE["fds"])
            and (name not in budgets or max(caches) <= budgets[name] * 1.05),
        }  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, help="requests per second (default: half of bench/results/load.json)")
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--store-mib", type=int, default=128, help="the worker's STORE_MEMORY_MIB (default: 128)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/soak.json")
    args = parser.parse_args()
    rate = args.rate
    if rate is None:
        found = REPO / "bench/results/load.json"
        if not found.exists():
            print("no bench/results/load.json: run bench/load.py --search first, or give --rate", file=sys.stderr)
            return 2
        rate = json.loads(found.read_text())["sustained_rate"] / 2
    work = Path(tempfile.mkdtemp(prefix="incidentflow-soak-"))
    os.environ["INCIDENTFLOW_STORE_MEMORY_MIB"] = str(args.store_mib)  # the workers' environment starts from ours
    with broker(work, port=39292, java_opts=BROKER_JAVA_OPTS) as bootstrap:
        pipeline = Pipeline(bootstrap, work, horizon_days=None, settle=True)  # the product's horizon; incidents resolve
        pipeline.start()
        pids = {name: p.pid for name, p in pipeline.processes.items()}
        kafka = broker_pid(bootstrap)
        if kafka is not None:
            pids["broker"] = kafka
        samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in pids}
        ports = {f"worker-{i}": port for i, port in enumerate(pipeline.worker_ports)}
        budgets: dict[str, float] = {}
        stores: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        steps: list[Step] = []
        lags: list[float | None] = []
        try:
            for minute in range(args.minutes):
                step = asyncio.run(run_step(pipeline, rate, 60.0, drain_seconds=0.0))
                steps.append(step)
                pipeline.check_alive()
                for name, pid in pids.items():
                    cache = 0.0
                    if name in ports:
                        stores[name].append(store_figures(ports[name]))
                        cache, budgets[name] = cache_mib(stores[name][-1])
                    samples[name].append((rss_mib(pid), fds(pid), cache))
                lags.append(pipeline.lag())  # a stage that falls behind shows here long before memory does
                print(f"minute {minute + 1:3d}: lag {lags[-1]}  " + "  ".join(f"{n} {m:.0f} MiB (cache {c:.0f}) {f} fds" for n, (m, f, c) in
                                                            ((n, s[-1]) for n, s in samples.items())), flush=True)  # fmt: skip
            final = asyncio.run(run_step(pipeline, rate, 10.0, drain_seconds=120.0))
            report(final)
        finally:
            pipeline.stop()
    warm = warm_up(rate)
    processes = verdict(samples, budgets, warm)
    accepted = sum(s.answered for s in [*steps, final])
    offered = sum(s.requests for s in [*steps, final])
    passed = all(bool(v["pass"]) for v in processes.values()) and final.drained and accepted == offered
    for name, v in processes.items():
        print(f"{name}: {v}")
    print(f"soak {'PASSED' if passed else 'FAILED'}: {accepted}/{offered} accepted at {rate:.1f}/s for "
          f"{args.minutes} min; lag back to zero: {final.drained}")  # fmt: skip
    write_result("soak", {
        "rate": rate, "minutes": args.minutes, "warm_up_minutes": warm, "store_mib": args.store_mib,
        "accepted": accepted, "offered": offered,
        "drained": final.drained, "passed": passed, "processes": processes,
        "samples": {n: [{"rss_mib": round(m, 1), "fds": f, "cache_mib": round(c, 1)} for m, f, c in s]
                    for n, s in samples.items()},
        "store_by_minute": stores,
        "latency_ms_by_minute": [s.latency_ms for s in steps], "lag_by_minute": lags, "final": asdict(final),
    }, args.out)  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
