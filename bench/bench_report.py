"""Writes bench/README.md from bench/README.template.md and the benchmarks' results in bench/results/.

    .venv/bin/python bench/bench_report.py        # make bench-report; every benchmark's run ends with it

The template holds what each benchmark measures and where its time goes; every figure comes from the
last run of its benchmark (bench/results/<name>.json, written by bench/common.write_result with the
command, date, version and machine). A `{{name}}` in the template is replaced by a table or a figure
rendered here; a benchmark with no results yet shows "not run".
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/results"
TEMPLATE = REPO / "bench/README.template.md"
OUT = REPO / "bench/README.md"

Result = dict[str, Any]


def load(name: str) -> Result | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def provenance(result: Result) -> str:
    """The first cells of every row: when, which version, how."""
    return f"| {result['date'][:16].replace('T', ' ')} | {result.get('version', '-')} | `{result['command']}` "


def table(header: list[str], row: str | None, name: str) -> str:
    lines = ["| " + " | ".join(["date", "version", "command", *header]) + " |",
             "| " + " | ".join(["---"] * (len(header) + 3)) + " |"]  # fmt: skip
    lines.append(row if row is not None else "| not run | | `bench/" + name + "` |" + " |" * len(header))
    return "\n".join(lines)


def rate(value: float, unit: str = "rec/s") -> str:
    return f"{value:,.0f} {unit}"


def fold(result: Result | None, name: str = "fold") -> dict[str, str]:
    header = ["aiokafka", "Faust pass-through", "fold", "every stage done", "ratio to Faust (fold, every stage)",
              "CPU per input record", "records written per input"]  # fmt: skip
    if result is None:
        return {"table": table(header, None, "fold_throughput.py"), "ratio": "(not run)", "cpu": "(not run)",
                "memory": "(not run)"}  # fmt: skip
    m, rounds = result["medians"], result["rounds"]
    spread = ", ".join(f"{r['drained'] / r['floor']:.2f}" for r in rounds)
    cpus = [r["cpu_per_record"] * 1e6 for r in rounds]
    row = (provenance(result) + f"| {rate(m['aiokafka_rate'])} | {rate(m['faust_rate'])} | {rate(m['fold_rate'])} | "
           f"{rate(m['every_stage_rate'])} | {m['fold_ratio_to_faust']:.2f}, **{m['every_stage_ratio_to_faust']:.2f}** "
           f"(rounds: {spread}) | **{m['cpu_us_per_record']:.0f} µs** ({min(cpus):.0f}-{max(cpus):.0f}) | "
           f"{m['written_per_input']:.1f} |")  # fmt: skip
    memory = result.get("memory")
    said = (f"{memory['rss_before_mib']:.0f} MiB before and {memory['rss_after_mib']:.0f} MiB after folding "
            f"{memory['open_incidents']:,} incidents that stay open ({memory['mib_per_100k_open']:.0f} MiB per 100,000)"
            if memory else "(not measured)")  # fmt: skip
    return {"table": table(header, row, "fold_throughput.py"), "ratio": f"{m['every_stage_ratio_to_faust']:.2f}",
            "cpu": f"{m['cpu_us_per_record']:.0f} µs", "memory": said}  # fmt: skip


def against(result: Result | None) -> dict[str, str]:
    """The fold benchmark with `--against`: this version and another one over the same records, round by round."""
    header = ["against", "every stage (this, other)", "ratio to Faust (this, other)", "CPU per input record (this, other)",
              "rounds: ratio this / other"]  # fmt: skip
    if result is None:
        return {"table": table(header, None, "fold_throughput.py --against"), "this": "(not run)",
                "other": "(not run)", "cpu": "(not run)", "version": "(not run)"}  # fmt: skip
    m, rounds = result["medians"], result["rounds"]
    spread = ", ".join(f"{r['drained'] / r['floor']:.2f} / {r['against']['drained'] / r['floor']:.2f}" for r in rounds)
    row = (provenance(result) + f"| {result['against']} | {rate(m['every_stage_rate'])}, "
           f"{rate(m['against_every_stage_rate'])} | **{m['every_stage_ratio_to_faust']:.2f}**, "
           f"**{m['against_every_stage_ratio_to_faust']:.2f}** | {m['cpu_us_per_record']:.0f} µs, "
           f"{m['against_cpu_us_per_record']:.0f} µs | {spread} |")  # fmt: skip
    return {"table": table(header, row, "fold_throughput.py --against"),
            "this": f"{m['every_stage_ratio_to_faust']:.2f}", "other": f"{m['against_every_stage_ratio_to_faust']:.2f}",
            "cpu": f"{m['cpu_us_per_record']:.0f} µs and {m['against_cpu_us_per_record']:.0f} µs",
            "version": result["against"]}  # fmt: skip


def startup(result: Result | None) -> dict[str, str]:
    header = ["incidents", "aiokafka reads the changelog", "cold start (restore)", "incidents in the restored store",
              "warm start"]  # fmt: skip
    if result is None:
        return {"table": table(header, None, "startup.py"), "cold": "(not run)", "factor": "(not run)"}
    row = (provenance(result) + f"| {result['incidents']:,} | {result['aiokafka_read_seconds']:.1f} s | "
           f"**{result['cold_start_seconds']:.1f} s** | {result['restored_incidents']:,} | "
           f"{result['warm_start_seconds']:.1f} s |")  # fmt: skip
    factor = result["cold_start_seconds"] / result["aiokafka_read_seconds"]
    return {"table": table(header, row, "startup.py"), "cold": f"{result['cold_start_seconds']:.1f} s",
            "factor": f"{factor:.1f}"}  # fmt: skip


def state_growth(result: Result | None) -> dict[str, str]:
    if result is None:
        return {"table": table([], None, "state_growth.py"), "months": "", "keys": "(not run)", "bytes": "(not run)",
                "cold": "(not run)", "read": "(not run)", "rss": "(not run)", "history": "(not run)"}  # fmt: skip
    header = ["events", "horizon", "state after month 12 / month 4 (keys, bytes)", "cold restore",
              "aiokafka reads the changelogs", "worker RSS at the end"]  # fmt: skip
    row = (provenance(result) + f"| {result['events']:,} over {result['days']} days | {result['horizon_days']} days | "
           f"**{result['keys_12_to_4']:.2f}, {result['bytes_12_to_4']:.2f}** | {result['cold_restore_seconds']:.1f} s | "
           f"{result['aiokafka_read_seconds']:.1f} s | {result['rss_mib']:.0f} MiB |")  # fmt: skip
    tables = [name for name in result["months"][0]["tables"] if any(m["tables"][name][0] for m in result["months"])]
    months = ["| month | events so far | live keys | live MiB | RocksDB on disk | " + " | ".join(tables) + " |",
              "| " + " | ".join(["---"] * (5 + len(tables))) + " |"]  # fmt: skip
    for m in result["months"]:
        cells = " | ".join(f"{m['tables'][t][0]:,} / {m['tables'][t][1] / 2**20:.1f}" for t in tables)
        months.append(f"| {m['month']} | {m['events']:,} | {m['live_keys']:,} | {m['live_bytes'] / 2**20:,.1f} | "
                      f"{m['disk_bytes'] / 2**20:,.0f} MiB | {cells} |")  # fmt: skip
    history = "deployment-history"
    by_month = {m["month"]: m["tables"].get(history, [0, 0]) for m in result["months"]}
    said = ", ".join(f"{by_month[k][0]:,} keys / {by_month[k][1] / 2**20:.1f} MiB after month {k}" for k in (4, 8, 12))
    return {"table": table(header, row, "state_growth.py"), "months": "\n".join(months),
            "keys": f"{result['keys_12_to_4']:.2f}", "bytes": f"{result['bytes_12_to_4']:.2f}",
            "cold": f"{result['cold_restore_seconds']:.1f} s", "read": f"{result['aiokafka_read_seconds']:.1f} s",
            "rss": f"{result['rss_mib']:.0f} MiB", "history": said}  # fmt: skip


def gateway(result: Result | None) -> dict[str, str]:
    header = ["bare ASGI", "gateway", "gateway p99", "ratio (median of rounds)"]
    if result is None:
        return {"table": table(header, None, "gateway_throughput.py"), "ratio": "(not run)"}
    rounds = ", ".join(f"{r:.2f}" for r in result["ratios"])
    row = (provenance(result) + f"| {rate(result['bare_rate'], 'req/s')} | {rate(result['gateway_rate'], 'req/s')} | "
           f"{result['gateway_p99_ms']:.1f} ms | **{result['ratio']:.2f}** ({rounds}) |")  # fmt: skip
    return {"table": table(header, row, "gateway_throughput.py"), "ratio": f"{result['ratio']:.2f}"}


def correlation(result: Result | None) -> dict[str, str]:
    header = ["fold alone", "fold + correlation", "ratio", "delay p50", "delay p99", "max"]
    if result is None:
        return {"table": table(header, None, "correlation.py")}
    d = result["delay_ms"]
    row = (provenance(result) + f"| {rate(result['fold_rate'], 'events/s')} | "
           f"{rate(result['correlated_rate'], 'events/s')} | {result['ratio']:.2f} | {d['p50']:,.0f} ms | "
           f"**{d['p99']:,.0f} ms** | {d['max']:,.0f} ms |")  # fmt: skip
    return {"table": table(header, row, "correlation.py")}


def load_search(result: Result | None) -> dict[str, str]:
    header = ["sustained", "gateway p99 there", "202 → incident p50 / p99 there", "first rates not sustained"]
    if result is None:
        return {"table": table(header, None, "load.py --search"), "rate": "(not run)"}
    steps = result["steps"]
    best = [s for s in steps if s["sustained"] and s["offered_rate"] == result["sustained_rate"]]
    failed = sorted((s for s in steps if not s["sustained"]), key=lambda s: s["offered_rate"])[:2]
    there = best[0] if best else None

    def why(step: Result) -> str:
        reasons = []
        if step["latency_ms"]["p99"] >= 100:
            reasons.append(f"gateway p99 {step['latency_ms']['p99']:,.0f} ms")
        if step["e2e_ms"].get("p99", 0) >= 1000:
            reasons.append(f"202 → incident p99 {step['e2e_ms']['p99']:,.0f} ms")
        if not step["drained"]:
            reasons.append("not drained")
        if not reasons:
            reasons.append(f"answers {step['statuses']}")
        return f"{step['offered_rate']:.1f}/s: {', '.join(reasons)}"

    cells = (f"{there['latency_ms']['p99']:.0f} ms | {there['e2e_ms']['p50']:.0f} / {there['e2e_ms']['p99']:.0f} ms"
             if there else "- | -")  # fmt: skip
    row = (provenance(result) + f"| **{result['sustained_rate']:.1f} requests/s** | {cells} | "
           f"{'; '.join(why(s) for s in failed) or '-'} |")  # fmt: skip
    return {"table": table(header, row, "load.py --search"), "rate": f"{result['sustained_rate']:.1f} requests/s"}


def soak(result: Result | None) -> dict[str, str]:
    header = ["rate", "accepted", "worker RSS first / last (slope)", "RocksDB cache / budget", "gateway, broker",
              "result"]  # fmt: skip
    if result is None:
        return {"table": table(header, None, "soak.py")}
    processes = result["processes"]
    worker = next(v for k, v in processes.items() if k.startswith("worker"))
    others = ", ".join(f"{k} {'flat' if v['pass'] else 'GROWS'}" for k, v in processes.items()
                       if not k.startswith("worker"))  # fmt: skip
    row = (provenance(result) + f"| {result['rate']:.1f} requests/s for {result['minutes']} min | "
           f"{result['accepted']:,} of {result['offered']:,} | {worker['rss_first_mib']} / {worker['rss_last_mib']} MiB "
           f"({worker['rss_slope_mib_per_hour']} MiB/h, {worker['rss_growth_per_hour']:.1%}/h) | "
           f"{worker['cache_last_mib']} / {worker['cache_budget_mib']} MiB | {others} | "
           f"**{'pass' if result['passed'] else 'FAIL'}**; lag back to zero: {'yes' if result['drained'] else 'NO'} |")  # fmt: skip
    return {"table": table(header, row, "soak.py")}


SECTIONS: dict[str, Callable[[], dict[str, str]]] = {
    "fold": lambda: fold(load("fold")),
    "relabel": lambda: fold(load("fold-relabel")),
    "against": lambda: against(load("fold-against")),
    "startup": lambda: startup(load("startup")),
    "growth": lambda: state_growth(load("state-growth")),
    "gateway": lambda: gateway(load("gateway")),
    "correlation": lambda: correlation(load("correlation")),
    "load": lambda: load_search(load("load")),
    "soak": lambda: soak(load("soak")),
}


def render(template: str) -> str:
    figures = {f"{section}.{key}": value for section, make in SECTIONS.items() for key, value in make().items()}

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in figures:
            raise SystemExit(f"bench/README.template.md names {match.group(0)}, which no section renders")
        return figures[match.group(1)]

    return re.sub(r"\{\{([\w.]+)\}\}", fill, template)


def main() -> int:
    OUT.write_text(render(TEMPLATE.read_text()))
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
