"""What a stage sees of the runtime: a table of bytes and the context of the batch it handles.

Stages (`stream/`) are written against these two small interfaces only, so that each runs in a
unit test over a dict-backed table and a context that collects what it sends
(`tests/unit/stream/fakes.py`), and in the worker over Faust's tables (`FaustTable`) and the
`Runtime` (runtime/harness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, Protocol, TypeVar

from faust.types import TableT
from pydantic import BaseModel, ValidationError

from incidentflow.runtime.packed import Record
from incidentflow.runtime.store import items_with_prefix

M = TypeVar("M", bound=BaseModel)


class DeadLetter(Exception):
    """Raised by a handler for a record it cannot use; the record goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Table(Protocol):
    """A table of bytes: reads and writes go to the partition of the record being handled."""

    def get(self, key: bytes) -> bytes | None: ...

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
    """A Faust table of bytes behind the `Table` interface."""

    def __init__(self, table: TableT[bytes, bytes]) -> None:
        self.faust = table
        self.get: Callable[[bytes], bytes | None] = table.get

    def set(self, key: bytes, value: bytes) -> None:
        self.faust[key] = value

    def pop(self, key: bytes) -> None:
        self.faust.pop(key, None)

    def has(self, key: bytes) -> bool:
        return key in self.faust

    def prefixed(self, prefix: bytes, partition: int | None = None) -> list[tuple[bytes, bytes]]:
        return items_with_prefix(self.faust, prefix, partition)


def load(table: Table, key: str, model: type[M]) -> M | None:
    """The value of `key` as `model` (None: no value)."""
    stored = table.get(key.encode())
    return model.model_validate_json(stored) if stored else None


def store(table: Table, key: str, value: BaseModel | None) -> None:
    """Writes `value` as JSON under `key` (None removes it)."""
    if value is None:
        table.pop(key.encode())
    else:
        table.set(key.encode(), value.model_dump_json().encode())


def parse(message: Record, model: type[M], what: str) -> M:
    """The record's value as `model`; a DeadLetter naming `what` it should have been when it is not."""
    try:
        return model.model_validate_json(message.value or b"")
    except ValidationError as error:
        raise DeadLetter(f"not {what}: {error}") from None
