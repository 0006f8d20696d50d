"""The worker's scrape-time collectors: trailing windows, owned series only, no sample without data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import rocksdict
from prometheus_client import CollectorRegistry, generate_latest

from incidentflow.domain import metrics
from incidentflow.metrics.worker import SeriesCollector, StoreCollector

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _text(collector: object) -> str:
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_change_failure_ratio_and_changes_per_window() -> None:
    entries = {
        ("checkout", NOW.date()): [(NOW - timedelta(hours=1), True), (NOW - timedelta(hours=2), False)],
        ("checkout", (NOW - timedelta(days=3)).date()): [(NOW - timedelta(days=3), True), (NOW - timedelta(days=3), True)],
        ("search", (NOW - timedelta(days=40)).date()): [(NOW - timedelta(days=40), True)],
    }  # fmt: skip
    index = {
        b"changes|checkout|prod|-": metrics.SeriesIndex(metric="changes", service="checkout", env="prod", severity="-",
                                                   days=(NOW.date() - timedelta(days=3), NOW.date())),
        b"changes|search|prod|-": metrics.SeriesIndex(metric="changes", service="search", env="prod", severity="-",
                                                 days=((NOW - timedelta(days=40)).date(),)),
        b"changes|payments|prod|-": metrics.SeriesIndex(metric="changes", service="payments", env="prod", severity="-",
                                                   days=(NOW.date(),)),
    }  # fmt: skip

    def day(series: str, on: date) -> metrics.Day:
        service = series.split("|")[1]
        # every failed change of checkout is rework too, and the one 3 days ago a rollback as well
        filed = [metrics.Entry(at=at, failed=failed, rework=failed, rollback=failed and at < NOW - timedelta(days=2))
                 for at, failed in entries.get((service, on), [])]  # fmt: skip
        figures = metrics.DayFigures()
        for entry in filed:
            figures = figures.entered(entry)
        return metrics.Day(on=on, figures=figures, entries=lambda: filed)

    text = _text(SeriesCollector(index=lambda: [(k, v.model_dump_json().encode()) for k, v in index.items()],
                                 day=day, owned=lambda key: b"payments" not in key, now=lambda: NOW))  # fmt: skip
    assert 'incidentflow_changes{env="prod",service="checkout",window="1d"} 2.0' in text
    assert 'incidentflow_change_failure_ratio{env="prod",service="checkout",window="1d"} 0.5' in text
    assert 'incidentflow_changes{env="prod",service="checkout",window="7d"} 4.0' in text
    assert 'incidentflow_deployment_frequency_per_day{env="prod",service="checkout",window="7d"} 0.5714' in text
    assert 'incidentflow_changes{env="prod",service="checkout",window="90d"} 4.0' in text
    assert 'incidentflow_change_failure_ratio{env="prod",service="checkout",window="7d"} 0.75' in text
    assert 'incidentflow_rework_ratio{env="prod",service="checkout",window="1d"} 0.5' in text
    assert 'incidentflow_rework_ratio{env="prod",service="checkout",window="7d"} 0.75' in text
    assert 'incidentflow_rollbacks{env="prod",service="checkout",window="1d"} 0.0' in text
    assert 'incidentflow_rollbacks{env="prod",service="checkout",window="7d"} 2.0' in text
    assert 'incidentflow_rework_ratio{env="prod",service="search",window="30d"}' not in text
    assert 'incidentflow_changes{env="prod",service="search",window="30d"} 0.0' in text
    assert (
        'incidentflow_change_failure_ratio{env="prod",service="search",window="30d"}' not in text
    )  # no changes, no ratio sample
    assert "payments" not in text  # owned by another worker


def _one_day(index: metrics.SeriesIndex, filed: list[metrics.Entry]) -> str:
    """What a scrape shows of one series whose entries are all filed today."""
    figures = metrics.DayFigures()
    for entry in filed:
        figures = figures.entered(entry)
    stored = index.model_copy(update={"days": (NOW.date(),)}).model_dump_json().encode()
    return _text(SeriesCollector(index=lambda: [(b"series", stored)],
                                 day=lambda s, d: metrics.Day(on=d, figures=figures, entries=lambda: filed),
                                 owned=lambda key: True, now=lambda: NOW))  # fmt: skip


def test_time_to_restore_median_and_p90_per_window() -> None:
    resolved = [metrics.Entry(at=NOW - timedelta(hours=h), seconds=s) for h, s in ((1, 60.0), (2, 600.0), (3, 6000.0))]
    text = _one_day(metrics.SeriesIndex(metric="mttr", service="db", env="prod", severity="high"), resolved)
    labels = 'env="prod",quantile="{q}",service="db",severity="high",window="1d"'
    median = _sample(text, "incidentflow_time_to_restore_seconds{" + labels.format(q="0.5") + "}")
    p90 = _sample(text, "incidentflow_time_to_restore_seconds{" + labels.format(q="0.9") + "}")
    assert abs(median - 600.0) <= 6.0 and abs(p90 - 600.0) <= 6.0  # nearest rank floor(0.9 * 2) = 1 of 3
    assert _sample(text, 'incidentflow_mttr_seconds{env="prod",service="db",severity="high",window="90d"}') == 2220.0


def test_lead_time_quantiles_of_the_changes_with_a_commit_time() -> None:
    filed = [metrics.Entry(at=NOW - timedelta(hours=1), seconds=3600.0), metrics.Entry(at=NOW - timedelta(hours=2))]
    text = _one_day(metrics.SeriesIndex(metric="changes", service="api", env="prod", severity="-"), filed)
    median = _sample(text, 'incidentflow_lead_time_seconds{env="prod",quantile="0.5",service="api",window="1d"}')
    assert abs(median - 3600.0) <= 36.0  # the change without a commit time is counted apart
    assert _sample(text, 'incidentflow_changes{env="prod",service="api",window="1d"}') == 2.0


def test_failed_deployment_recovery_quantiles_of_the_changes_that_recovered() -> None:
    filed = [metrics.Entry(at=NOW - timedelta(hours=h), seconds=s) for h, s in ((1, 1200.0), (30, 7200.0))]
    text = _one_day(metrics.SeriesIndex(metric="recovery", service="api", env="prod", severity="-"), filed)
    labels = 'env="prod",quantile="{q}",service="api",window="{w}"'
    day = _sample(text, "incidentflow_failed_deployment_recovery_seconds{" + labels.format(q="0.5", w="1d") + "}")
    assert abs(day - 1200.0) <= 12.0  # the one of 30 hours ago is outside the day, inside the week
    assert _sample(text, 'incidentflow_failed_deployments_recovered{env="prod",service="api",window="1d"}') == 1.0
    assert _sample(text, 'incidentflow_failed_deployments_recovered{env="prod",service="api",window="7d"}') == 2.0
    assert "incidentflow_changes{" not in text.replace("# HELP incidentflow_changes ", "").replace(
        "# TYPE incidentflow_changes ", ""
    )  # a recovery series is no change series


def test_mttr_is_absent_without_resolutions_and_open_counts_show() -> None:
    index = {
        b"mttr|db|staging|high": metrics.SeriesIndex(
            metric="mttr", service="db", env="staging", severity="high", open=3
        )
    }
    text = _text(SeriesCollector(index=lambda: [(k, v.model_dump_json().encode()) for k, v in index.items()],
                                 day=lambda s, d: metrics.Day(on=d, figures=metrics.DayFigures(), entries=list), owned=lambda key: True, now=lambda: NOW))  # fmt: skip
    assert 'incidentflow_incidents_open{env="staging",service="db",severity="high"} 3.0' in text
    assert "incidentflow_mttr_seconds{" not in text


def _sample(text: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_store_collector_sums_memtables_and_files_of_every_open_database(tmp_path: Path) -> None:
    databases = [rocksdict.Rdict(str(tmp_path / name)) for name in ("a", "b")]
    for i in range(2_000):
        databases[i % 2][f"key-{i}".encode()] = b"x" * 100
    before = _text(StoreCollector(lambda: databases))
    assert _sample(before, 'incidentflow_store_memory_bytes{kind="memtables"}') > 2_000 * 100
    assert _sample(before, "incidentflow_store_sst_files") == 0
    assert _sample(before, "incidentflow_store_databases") == 2
    for db in databases:
        db.flush()
    after = _text(StoreCollector(lambda: databases))
    assert _sample(after, "incidentflow_store_sst_files") == 2
    assert _sample(after, 'incidentflow_store_memory_bytes{kind="table_readers"}') > 0
    databases[0].close()
    assert _sample(_text(StoreCollector(lambda: databases)), "incidentflow_store_databases") == 1
    databases[1].close()
