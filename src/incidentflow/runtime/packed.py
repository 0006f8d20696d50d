"""Records between the worker's own stages travel packed: one Kafka record per batch and partition.

Every alert a worker folds makes about five records for its later stages (metric contributions,
correlation sides, suspects); sent one by one, each costs a producer send and then, on the way in,
Faust's whole per-record path (drain loop, conductor, channel, stream, ack), which was most of the
worker's time (bench/README.md). So an agent's writes to an internal topic wait in an `Outbox`
until its batch is handled, and go out as one record per topic and partition holding every item
in the order written; the agent that reads the topic handles each item as a `Record` of its own.

A packed record's value is lines joined by ``\\n``, one item each: the item's key as a JSON string,
a tab, and the item's value (compact JSON, which holds no raw tab or newline). Its Kafka key is the
key of its first item. Items are routed to the partition their own key hashes to, as the producer's
default partitioner would route a record of that key, so tables stay co-partitioned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from aiokafka.partitioner import murmur2
from faust.types import Message

MAX_ITEMS = 4096
"""Most items in one packed record; a record's items are ordered by `Record.position` within its offset."""
MAX_BYTES = 512 * 1024
"""Most bytes of one packed record's value (the broker's default limit per record is 1 MiB)."""


class NotPacked(ValueError):
    """A record on an internal topic that is not a packed record."""


@dataclass(frozen=True, slots=True)
class Record:
    """What a handler reads: a Kafka record, or one item of a packed record (`item` its index)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    item: int | None = None
    headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None = None

    @classmethod
    def of(cls, message: Message) -> Record:
        return cls(message.topic, message.partition, message.offset, message.key, message.value, message.timestamp,
                   headers=message.headers)  # fmt: skip

    def header_map(self) -> dict[str, bytes]:
        """The record's headers by name (the last of a repeated name)."""
        if not self.headers:
            return {}
        return dict(self.headers.items() if isinstance(self.headers, Mapping) else self.headers)

    @property
    def position(self) -> int:
        """Orders every input of a partition: by offset, then by item within a packed record."""
        return self.offset * MAX_ITEMS + (self.item or 0)

    @property
    def name(self) -> str:
        """Names this input among all inputs of its topic: `partition@offset`, `.item` for an item."""
        return f"{self.partition}@{self.offset}" + ("" if self.item is None else f".{self.item}")


def unpack(message: Message) -> list[Record]:
    """The items of a packed record, in the order they were written; NotPacked when it is not one."""
    if not message.value:
        raise NotPacked("empty value")
    records = []
    for index, line in enumerate(message.value.split(b"\n")):
        key, tab, value = line.partition(b"\t")
        if not tab:
            raise NotPacked(f"line {index + 1} has no tab between key and value")
        records.append(Record(message.topic, message.partition, message.offset, _key(key, index), value,
                              message.timestamp, index))  # fmt: skip
    return records


def _key(encoded: bytes, index: int) -> bytes:
    """A line's key: a JSON string (most keys have no escapes, and are the bytes between the quotes)."""
    if len(encoded) >= 2 and encoded[0] == encoded[-1] == 0x22 and b"\\" not in encoded and b'"' not in encoded[1:-1]:
        return encoded[1:-1]
    try:
        decoded = json.loads(encoded)
    except ValueError:
        raise NotPacked(f"line {index + 1}: the key is not JSON") from None
    if not isinstance(decoded, str):
        raise NotPacked(f"line {index + 1}: the key is not a JSON string")
    return decoded.encode()


@lru_cache(maxsize=4096)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner gives a record of this key (aiokafka's
    murmur2 is pure Python: the keys of a batch repeat, so each is hashed once)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _json_string(key: str) -> bytes:
    """`key` as a JSON string: most keys need no escape and are put between quotes as they are."""
    if key.isprintable() and '"' not in key and "\\" not in key and key.isascii():
        return b'"' + key.encode() + b'"'
    return json.dumps(key).encode()


@dataclass
class Outbox:
    """Items written to internal topics while a batch is handled, sent packed when it is done."""

    partitions: int
    pending: dict[tuple[str, int], list[tuple[bytes, bytes]]] = field(default_factory=dict)
    """(topic, partition) -> (key, line) of each item, in write order."""

    def add(self, topic: str, key: str, value: bytes) -> None:
        if b"\n" in value or b"\t" in value:  # JSON with whitespace of its own: compacted, so it fits a line
            value = json.dumps(json.loads(value), separators=(",", ":")).encode()
        encoded = key.encode()
        where = (topic, partition_of(encoded, self.partitions))
        self.pending.setdefault(where, []).append((encoded, _json_string(key) + b"\t" + value))

    def __len__(self) -> int:
        return sum(len(items) for items in self.pending.values())

    def take(self) -> Iterator[tuple[str, int, bytes, bytes]]:
        """Empties the outbox: (topic, partition, key, value) of each packed record, in write order
        within each topic and partition; a record's key is the key of its first item."""
        pending, self.pending = self.pending, {}
        for (topic, partition), items in pending.items():
            for chunk in _chunks(items):
                yield topic, partition, chunk[0][0], b"\n".join(line for _, line in chunk)


def _chunks(items: list[tuple[bytes, bytes]]) -> Iterator[list[tuple[bytes, bytes]]]:
    chunk: list[tuple[bytes, bytes]] = []
    size = 0
    for item in items:
        line = item[1]
        if chunk and (len(chunk) >= MAX_ITEMS or size + len(line) + 1 > MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(line) + 1
    if chunk:
        yield chunk
