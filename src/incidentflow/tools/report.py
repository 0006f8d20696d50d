"""`incidentflow report`: the four DORA keys per service and env for a range of days, from `incidentflow.metrics`."""

from __future__ import annotations

import asyncio
import json
from datetime import date

from aiokafka import AIOKafkaConsumer, TopicPartition

from incidentflow.config import Settings
from incidentflow.domain import dora
from incidentflow.domain.records import MetricRow
from incidentflow.domain.report import ServiceReport, report
from incidentflow.topics import Topics


async def read_rows(settings: Settings) -> list[MetricRow]:
    """The latest row per key: the topic is compacted and read to its end offsets."""
    topic = Topics.of(settings).metrics
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001  # first metadata fetch
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            raise SystemExit(f"incidentflow report: topic {topic} does not exist (no worker has run?)")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[bytes, bytes] = {}

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    if record.key is not None and record.value is not None:
                        latest[record.key] = record.value
        return [MetricRow.model_validate_json(value) for value in latest.values()]
    finally:
        await consumer.stop()


def run_report(
    settings: Settings, first: date, last: date, service: str | None, as_json: bool, env: str | None = None,
    benchmark: dora.Benchmark = dora.DEFAULT,
) -> int:  # fmt: skip
    rows = asyncio.run(read_rows(settings))
    found = report(rows, first, last, service, env, benchmark)
    if as_json:
        payload = {"from": first.isoformat(), "to": last.isoformat(), "benchmark": benchmark,
                   "services": [r.model_dump() for r in found]}  # fmt: skip
        print(json.dumps(payload, indent=2))
    else:
        print(render(found, first, last, benchmark))
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render(found: list[ServiceReport], first: date, last: date, benchmark: dora.Benchmark = dora.DEFAULT) -> str:
    """Per service and env, one line per DORA key (the five of DORA's 2024 report): count, mean,
    median, p90, max and level (none for rework rate: DORA publishes none)."""
    out = [f"{first.isoformat()} .. {last.isoformat()} (UTC days, inclusive); levels: DORA {benchmark} clusters"]
    header = ("key", "count", "mean", "median", "p90", "max", "level")
    for r in found:
        rate = "-" if r.change_failure_rate is None else f"{r.change_failure_rate:.1%}"
        rework = "-" if r.rework_rate is None else f"{r.rework_rate:.1%}"
        lines = [
            ("deployment frequency", str(r.changes), f"{r.deployments_per_day:.2f}/day", "", "", "",
             r.deployment_frequency_level or "-"),
            ("lead time for changes", str(r.lead_times), _duration(r.lead_time_mean_seconds),
             _duration(r.lead_time_median_seconds), _duration(r.lead_time_p90_seconds),
             _duration(r.lead_time_max_seconds), r.lead_time_level or "-"),
            ("change failure rate", f"{r.failed_changes}/{r.changes}", rate, "", "", "",
             r.change_failure_rate_level or "-"),
            ("deployment rework rate", f"{r.reworked_changes}/{r.changes}", rework, "", "", "", "-"),
            ("  of which rollbacks", str(r.rollbacks), "", "", "", "", ""),
            ("time to restore", str(r.incidents), _duration(r.mttr_seconds), _duration(r.median_seconds),
             _duration(r.p90_seconds), _duration(r.max_seconds), r.time_to_restore_level or "-"),
            ("failed deployment recovery", str(r.recoveries), _duration(r.recovery_mean_seconds),
             _duration(r.recovery_median_seconds), _duration(r.recovery_p90_seconds),
             _duration(r.recovery_max_seconds), r.recovery_level or "-"),
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        out.append("")
        out.append(f"{r.service}  env={r.env}")
        for row in [header, *lines]:
            cells = (
                cell.ljust(w) if i in (0, 6) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            out.append("  " + "  ".join(cells).rstrip())
    if not found:
        out.append("(no incidents resolved and no changes in this range)")
    return "\n".join(out)
