"""Parsed table values kept while an agent handles a batch, written back once when it is done.

A metric series' index and its day figures are read, changed and written by nearly every
contribution of a batch (a batch of a few hundred contributions touches a handful of series):
parsing and dumping the same JSON, and writing the same key, once per contribution was most of the
series stage. A `BatchCache` keeps each value it read or was given, parsed, for the rest of the
batch, and `write_back` (an agent's `finish`) writes each changed one once, in the partition of
the record that changed it. Keys are read one by one: a prefix read of the table
(`Table.prefixed`) does not see values waiting here, so a table read by prefix keeps those
keys out of the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from incidentflow.domain.base import from_json, json_of
from incidentflow.runtime.tables import Context, Table, Where

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")


@dataclass
class _Entry(Generic[M]):
    value: M | None
    where: Where
    dirty: bool = False


@dataclass
class BatchCache(Generic[M]):
    """One table's values of type `M`, as the records of the current batch left them."""

    table: Table
    model: type[M]
    context: Context
    entries: dict[tuple[int, bytes], _Entry[M]] = field(default_factory=dict)

    def get(self, key: bytes) -> M | None:
        """The value of `key` in the partition of the record being handled (None: no value)."""
        where = self.context.here()
        entry = self.entries.get((where.partition, key))
        if entry is None:
            stored = self.table.get(key)
            value = from_json(self.model, stored) if stored else None
            entry = self.entries[(where.partition, key)] = _Entry(value, where)
        return entry.value

    def set(self, key: bytes, value: M | None) -> None:
        """Gives `key` a new value (None removes it), written back with the batch."""
        where = self.context.here()
        self.entries[(where.partition, key)] = _Entry(value, where, dirty=True)

    def discard(self) -> None:
        """Runs before a batch: forgets what an earlier batch kept and did not write back."""
        self.entries.clear()

    def write_back(self) -> None:
        """Runs once a batch's records are handled: writes each changed value, and forgets them all
        (the next batch reads the table again: another agent or worker may own the partition then)."""
        entries, self.entries = self.entries, {}
        for (_, key), entry in entries.items():
            if not entry.dirty:
                continue
            with self.context.acting_for(entry.where):
                if entry.value is None:
                    self.table.pop(key)
                else:
                    self.table.set(key, json_of(entry.value))


@dataclass
class Recent(Generic[V]):
    """The values last used, at most `size` of them: using one more forgets the one used longest ago.

    For state a stage reads whole from its table and keeps between records (a history, a
    repository's pushes): what is forgotten is read again from the table when it is used again, so
    the memory stays bounded whatever the number of keys, and a key that gets no more input (a
    service retired, a repository archived) does not hold memory for the rest of the generation."""

    size: int
    values: OrderedDict[str, V] = field(default_factory=OrderedDict)

    def get(self, key: str) -> V | None:
        found = self.values.get(key)
        if found is not None:
            self.values.move_to_end(key)
        return found

    def put(self, key: str, value: V) -> None:
        self.values[key] = value
        self.values.move_to_end(key)
        while len(self.values) > self.size:
            self.values.popitem(last=False)

    def pop(self, key: str) -> None:
        self.values.pop(key, None)

    def clear(self) -> None:
        self.values.clear()
