"""Building canonical events tersely in tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from incidentflow.domain.events import AlertAction, AlertEvent, ChangeEvent, ChangeStatus, Severity
from incidentflow.runtime.packed import Record
from incidentflow.runtime.tables import DeadLetter, Stage, Where

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
    committed_minute: float | None = None,
) -> ChangeEvent:
    at = T0 + timedelta(minutes=minute)
    return ChangeEvent(
        committed_at=None if committed_minute is None else T0 + timedelta(minutes=committed_minute),
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
    """A table of bytes in memory: the `Table` a stage sees (runtime/tables.py), and what the runtime
    uses of a Faust table (`data` is what `items_with_prefix` scans when there is no RocksDB store)."""

    @property
    def data(self) -> dict[bytes, bytes]:
        return self

    def get(self, key: bytes, partition: int | None = None) -> bytes | None:  # type: ignore[override]  # Table's get
        return super().get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]  # dict's and Table's pop in one
        return super().pop(key, default)

    def has(self, key: bytes) -> bool:
        return key in self

    def prefixed(self, prefix: bytes, partition: int | None = None) -> list[tuple[bytes, bytes]]:
        return sorted((key, value) for key, value in self.data.items() if key.startswith(prefix))


@dataclass(frozen=True)
class At:
    """Where a record lives, as a stage sees it (`Context.here`)."""

    partition: int


@dataclass
class FakeContext:
    """The runtime as a stage sees it (`Context`), in memory: what the stage sent and dead-lettered,
    and the partition of the record being handled (`handling`, `acting_for`)."""

    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    dead: list[tuple[Record, str, str]] = field(default_factory=list)
    partition: int | None = None
    generation: int = 1

    async def send(self, topic: str, key: str, value: str | bytes) -> None:
        self.sent.append((topic, key, value.encode() if isinstance(value, str) else value))

    async def dead_letter(self, record: Record, kind: Literal["invalid", "error"], reason: str) -> None:
        self.dead.append((record, kind, reason))

    def here(self) -> At:
        if self.partition is None:
            raise RuntimeError("here() is asked only while a record is handled")
        return At(self.partition)

    @contextmanager
    def acting_for(self, where: Where) -> Iterator[None]:
        before, self.partition = self.partition, where.partition
        try:
            yield
        finally:
            self.partition = before

    def to(self, topic: str) -> list[tuple[str, bytes]]:
        """(key, value) of what was sent to `topic`, in order."""
        return [(key, value) for sent_topic, key, value in self.sent if sent_topic == topic]

    async def run(self, stage: Stage, records: Iterable[Record]) -> list[str]:
        """Handles one batch as the runtime does: `begin`, each record in its partition (a DeadLetter
        dead-lettered), then `finish`. Returns each record's outcome."""
        stage.begin()
        outcomes = []
        for record in records:
            with self.acting_for(At(record.partition)):
                try:
                    outcomes.append(await stage.handle(record))
                except DeadLetter as error:
                    await self.dead_letter(record, "invalid", error.reason)
                    outcomes.append(error.outcome)
        await stage.finish()
        return outcomes


def record(topic: str, key: str | bytes, value: str | bytes, offset: int = 0, partition: int = 0,
           item: int | None = None) -> Record:  # fmt: skip
    """A record (or item of a packed record) as a stage receives it."""
    return Record(topic, partition, offset, key.encode() if isinstance(key, str) else key,
                  value.encode() if isinstance(value, str) else value, None, item)  # fmt: skip
