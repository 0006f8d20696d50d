"""Gateway throughput and latency with real Kafka acks, next to a bare ASGI endpoint measured in the same run.

    .venv/bin/python bench/gateway_throughput.py [--seconds 15] [--concurrency 32]

Both servers run as single uvicorn processes with the same settings and get the same closed-loop
load (aiohttp, N connections) with the same Elven body. The bare endpoint reads the body, parses
the JSON and answers 202: what is left of the gateway's cost is auth, validation, the envelope
and the Kafka round trip with acks=all. Uses INCIDENTFLOW_KAFKA_BOOTSTRAP, else starts the local
broker of deploy/kafka on port 39092.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from common import broker, write_result

BODY = json.dumps(
    {
        "title": "Checkout API error rate above 5%",
        "description": "HTTP 5xx ratio on checkout-api reached 7.2% over the last 5 minutes",
        "external_aggregate_key": "bench-1",
        "action": "alarmed",
        "severity": "critical",
        "tags": [{"name": "service", "value": "checkout"}, {"name": "region", "value": "eu-1"}],
    }
).encode()
TOKEN = "bench-elven-token-0123456789"

BARE_APP = """
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    json.loads(body)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {port}")


async def load(
    url: str, seconds: float, concurrency: int, headers: dict[str, str]
) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, statuses


def measure(name: str, url: str, seconds: float, concurrency: int) -> dict[str, float]:
    headers = {"content-type": "application/json"}
    asyncio.run(load(url, 2.0, concurrency, headers))  # warm-up: connections, producer, JIT-free caches
    started = time.monotonic()
    latencies, statuses = asyncio.run(load(url, seconds, concurrency, headers))
    elapsed = time.monotonic() - started
    ok = statuses.get(202, 0)
    q = statistics.quantiles(latencies, n=100)
    result = {"rate": ok / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "errors": len(latencies) - ok}
    print(f"{name:<28} {result['rate']:>9.0f} req/s   p50 {result['p50_ms']:6.2f} ms   p99 {result['p99_ms']:6.2f} ms"
          f"   non-202: {result['errors']:.0f}")  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="incidentflow-bench-"))
    with broker(work) as bootstrap:
        return run(args, work, bootstrap)


def run(args: argparse.Namespace, work: Path, bootstrap: str) -> int:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        (work / "integrations.yaml").write_text(
            f"integrations:\n  - {{name: bench, source: elven, token: {TOKEN}, rate_limit_per_minute: 100000000}}\n"
        )
        (work / "bare_app.py").write_text(BARE_APP)
        gateway_port, bare_port = free_port(), free_port()
        env = {**os.environ, "INCIDENTFLOW_KAFKA_BOOTSTRAP": bootstrap, "INCIDENTFLOW_GATEWAY_PORT": str(gateway_port),
               "INCIDENTFLOW_INTEGRATIONS_FILE": str(work / "integrations.yaml"),
               "INCIDENTFLOW_TOPIC_NAMESPACE": f"bench-{uuid.uuid4().hex[:6]}"}  # fmt: skip
        with (work / "gateway.log").open("wb") as log:
            processes.append(
                subprocess.Popen([sys.executable, "-m", "incidentflow.cli", "gateway"], env=env, stdout=log, stderr=log)
            )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bare_app:app",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=work,
            )  # fmt: skip
        )
        wait_port(gateway_port)
        wait_port(bare_port)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{args.concurrency} connections, {args.seconds:.0f} s each, broker {bootstrap}")  # fmt: skip
        bare_url = f"http://127.0.0.1:{bare_port}/"
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/ingest/elven/{TOKEN}"
        rounds = []
        for i in range(args.rounds):  # alternate, so a noisy neighbour hits both alike
            print(f"round {i + 1}:")
            bare = measure("  bare ASGI (parse, 202)", bare_url, args.seconds, args.concurrency)
            gateway = measure("  gateway (Kafka acks=all)", gateway_url, args.seconds, args.concurrency)
            rounds.append((bare, gateway))
        ratios = sorted(g["rate"] / b["rate"] for b, g in rounds)
        median = statistics.median(ratios)
        best_bare = statistics.median(b["rate"] for b, _ in rounds)
        best_gateway = statistics.median(g["rate"] for _, g in rounds)
        p99 = statistics.median(g["p99_ms"] for _, g in rounds)
        print(f"median over {args.rounds} rounds: bare {best_bare:.0f} req/s, gateway {best_gateway:.0f} req/s "
              f"(p99 {p99:.1f} ms); ratio gateway/bare {median:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
        write_result("gateway", {"concurrency": args.concurrency, "seconds": args.seconds, "bare_rate": best_bare,
                                 "gateway_rate": best_gateway, "gateway_p99_ms": p99, "ratio": median,
                                 "ratios": ratios})  # fmt: skip
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
