"""What a stage sees of the runtime: a table of bytes and the context of the batch it handles.

Stages (`stream/`) are written against these two small interfaces only, so that each runs in a
unit test over a dict-backed table and a context that collects what it sends
(`FakeContext` in `tests/factories.py`), and in the worker over Faust's tables (`FaustTable`) and the
`Runtime` (runtime/harness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, TypeVar

from faust.types import TableT
from pydantic import BaseModel, ValidationError

from incidentflow.domain.base import from_json, json_of
from incidentflow.runtime.changelog import Changelog
from incidentflow.runtime.packed import Record
from incidentflow.runtime.store import items_with_prefix

M = TypeVar("M", bound=BaseModel)


class DeadLetter(Exception):
    """Raised by a handler for a record it cannot use; the record goes to the dead-letter topic and
    is counted under `outcome`."""

    def __init__(self, reason: str, outcome: str = "deadlettered") -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome


class TooLate(DeadLetter):
    """An event that can no longer be applied: dead-lettered with reason and outcome `too_late`."""

    def __init__(self) -> None:
        super().__init__("too_late", outcome="too_late")


class Table(Protocol):
    """A table of bytes: reads and writes go to the partition of the record being handled."""

    def get(self, key: bytes, partition: int | None = None) -> bytes | None:
        """The value of `key`, from `partition` (outside an agent: a scrape), else from that of the
        record being handled."""
        ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def pop(self, key: bytes) -> None: ...

    def has(self, key: bytes) -> bool: ...

    def prefixed(self, prefix: bytes, partition: int | None = None) -> list[tuple[bytes, bytes]]:
        """The (key, value) pairs whose key starts with `prefix`, in key order, from `partition`
        (outside an agent: a scrape), else from that of the record being handled."""
        ...


class Where(Protocol):
    """Where the record being handled lives: its partition (the rest is the runtime's)."""

    @property
    def partition(self) -> int: ...


class Context(Protocol):
    """What a stage may do besides reading and writing its tables."""

    async def send(self, topic: str, key: str, value: str | bytes) -> None:
        """Sends a record; it reaches Kafka before the input offsets of its batch are committed."""
        ...

    async def dead_letter(self, record: Record, kind: Literal["invalid", "error"], reason: str) -> None: ...

    def here(self) -> Where:
        """The place of the record being handled, for writes made later in the batch (`acting_for`)."""
        ...

    def acting_for(self, where: Where) -> AbstractContextManager[None]:
        """Within it, table reads and writes go to the partition of `where` (a batch's `finish`)."""
        ...

    @property
    def generation(self) -> int:
        """The consumer group generation: while it stays the same, this worker alone handles the
        partitions it has, so what a stage kept of their tables is still theirs."""
        ...


class Stage(Protocol):
    """One product stage: an agent's rules, over the records of the topics it reads."""

    name: str
    topics: tuple[str, ...]

    async def handle(self, message: Record, /) -> str:
        """Runs for every record (or item of a packed record); returns the outcome counted."""
        ...

    def begin(self) -> None:
        """Runs before a batch: forgets what an earlier batch kept and never finished."""
        ...

    async def finish(self) -> None:
        """Runs once the batch's records are handled: writes back what the batch kept."""
        ...


class PerRecord:
    """A stage that writes everything as each record is handled, and keeps nothing for its batch."""

    def begin(self) -> None:
        """Nothing is kept from an earlier batch."""

    async def finish(self) -> None:
        """Every write was made as its record was handled."""


class FaustTable:
    """A Faust table of bytes behind the `Table` interface.

    On a RocksDB store a write goes straight to the database of the record's partition and to the
    runtime's changelog (`Changelog`, sent when the batch is done), and a read straight to that
    database: Faust's own path for a key (its mapping layers, a key index behind a lock, sensors,
    a delete tried in every partition's database for a key it has not seen lately) cost several
    times the RocksDB call itself. Other stores (`memory://`) take Faust's own path.
    """

    def __init__(self, table: TableT[bytes, bytes], changelog: Changelog, partition: Callable[[], int | None]) -> None:
        self.faust = table
        self._changelog = changelog
        self._partition = partition
        self._rocks: Any = None
        self._topic = ""
        self._resolved = False

    def _store(self) -> Any:
        """The RocksDB store under the table (None for another kind), looked up once it exists."""
        if not self._resolved:
            store = getattr(self.faust, "data", None)
            if hasattr(store, "_db_for_partition") and getattr(store, "use_rocksdict", False):
                self._rocks, self._topic = store, self.faust.changelog_topic.get_topic_name()
            self._resolved = True
        return self._rocks

    def _where(self, partition: int | None) -> int | None:
        return partition if partition is not None else self._partition()

    def get(self, key: bytes, partition: int | None = None) -> bytes | None:
        """The value of `key` in `partition` (a partition this worker has not opened holds nothing
        here: it is read, never opened, outside an agent), else in that of the record being handled."""
        store, where = self._store(), self._where(partition)
        if store is None or where is None:
            return self.faust.get(key)
        if partition is not None:
            db = store._dbs.get(partition)  # noqa: SLF001  # Faust's open databases, by partition
            return None if db is None else db.get(key)
        value: bytes | None = store._db_for_partition(where).get(key)  # noqa: SLF001  # the database Faust reads
        return value

    def set(self, key: bytes, value: bytes) -> None:
        store, where = self._store(), self._partition()
        if store is None or where is None:
            self.faust[key] = value
            return
        store._db_for_partition(where).put(key, value)  # noqa: SLF001
        self._changelog.add(self._topic, where, key, value, store)

    def pop(self, key: bytes) -> None:
        store, where = self._store(), self._partition()
        if store is None or where is None:
            self.faust.pop(key, None)
            return
        store._db_for_partition(where).delete(key)  # noqa: SLF001
        self._changelog.add(self._topic, where, key, None, store)

    def has(self, key: bytes) -> bool:
        return self.get(key) is not None

    def prefixed(self, prefix: bytes, partition: int | None = None) -> list[tuple[bytes, bytes]]:
        return items_with_prefix(self.faust, prefix, partition)


async def rekeyed(context: Context, message: Record, key: str) -> bool:
    """A stage's state lives in the partition of its key: a record keyed otherwise (a producer that
    keyed it differently) is sent again to its own topic under `key`. True when it was."""
    if message.key == key.encode():
        return False
    await context.send(message.topic, key, message.value or b"")
    return True


def load(table: Table, key: str, model: type[M]) -> M | None:
    """The value of `key` as `model` (None: no value)."""
    stored = table.get(key.encode())
    return from_json(model, stored) if stored else None


def store(table: Table, key: str, value: BaseModel | None) -> None:
    """Writes `value` as JSON under `key` (None removes it)."""
    if value is None:
        table.pop(key.encode())
    else:
        table.set(key.encode(), json_of(value))


def parse(message: Record, model: type[M], what: str) -> M:
    """The record's value as `model`; a DeadLetter naming `what` it should have been when it is not."""
    try:
        return from_json(model, message.value or b"")
    except ValidationError as error:
        raise DeadLetter(f"not {what}: {error}") from None
