"""Building canonical events tersely in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from incidentflow.domain.events import AlertAction, AlertEvent, ChangeEvent, ChangeStatus, Severity

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def alert(
    action: AlertAction,
    minute: float,
    *,
    key: str = "db-1",
    integration: str = "acme",
    event_id: str | None = None,
    severity: Severity | None = None,
    labels: dict[str, str] | None = None,
    title: str | None = None,
    received_minute: float | None = None,
) -> AlertEvent:
    at = T0 + timedelta(minutes=minute)
    return AlertEvent(
        event_id=event_id or f"{action}-{minute}-{severity}-{title}",
        aggregate_id=f"{integration}:{key}",
        integration=integration,
        source="native",
        external_aggregate_key=key,
        action=action,
        occurred_at=at,
        received_at=T0 + timedelta(minutes=received_minute if received_minute is not None else minute),
        severity=severity,
        title=title,
        labels=labels or {},
    )


def change(
    status: ChangeStatus,
    minute: float,
    *,
    key: str = "deploy-1",
    integration: str = "ship",
    event_id: str | None = None,
    labels: dict[str, str] | None = None,
    title: str | None = None,
) -> ChangeEvent:
    at = T0 + timedelta(minutes=minute)
    return ChangeEvent(
        event_id=event_id or f"{status}-{minute}-{title}-{sorted((labels or {}).items())}",
        change_id=f"{integration}:{key}",
        integration=integration,
        source="native",
        status=status,
        occurred_at=at,
        received_at=at,
        title=title,
        labels=labels or {},
    )


class DictTable(dict[bytes, bytes]):
    """What the worker's code uses of a Faust table of bytes, in memory; `data` is what
    `items_with_prefix` scans when there is no RocksDB store."""

    @property
    def data(self) -> dict[bytes, bytes]:
        return self
