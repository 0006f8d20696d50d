"""Produce requests encoded with one copy of the records they carry.

aiokafka encodes a request by joining the encoding of each of its fields, level by level: a record
batch is copied once by the partition that holds it, again by the partition array, the topic, the
topic array and the request, and twice more by the connection (header, size). A worker produces
several records per input record (changelogs, stage records, outputs), in requests of a megabyte
or more, so those copies cost about 5% of its CPU per record in `bench/fold_throughput.py`. Here a
produce request's fields are encoded into one list of parts, record batches as they are, and
joined once: byte for byte what aiokafka writes (tests/unit/runtime/test_wire.py holds the two
equal for every version of the request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.protocol import produce
from aiokafka.protocol.api import RequestStruct
from aiokafka.protocol.types import Array, Bytes, Int32, Schema

_NULL = Int32.encode(-1)


def encode_flat(schema: Schema, values: Sequence[Any]) -> bytes:
    """What `schema.encode(values)` returns, made with one join."""
    parts: list[bytes] = []
    _parts(schema, values, parts)
    return b"".join(parts)


def _parts(schema: Schema, values: Sequence[Any], out: list[bytes]) -> None:
    """Appends the encoding of each field, as `Schema.encode` joins them, to `out`."""
    if len(values) != len(schema.fields):
        raise ValueError("Item field count does not match Schema")
    for field, value in zip(schema.fields, values, strict=True):
        if isinstance(field, Schema):
            _parts(field, value, out)
        elif type(field) is Array:  # not its compact subclass, which encodes its length otherwise
            if value is None:
                out.append(_NULL)
                continue
            out.append(Int32.encode(len(value)))
            inner = field.array_of
            if isinstance(inner, Schema):
                for item in value:
                    _parts(inner, item, out)
            else:
                out.extend(inner.encode(item) for item in value)
        elif field is Bytes:
            if value is None:
                out.append(_NULL)
            else:
                out.append(Int32.encode(len(value)))
                out.append(value)
        else:
            out.append(field.encode(value))


def produce_requests() -> list[type[RequestStruct]]:
    """Every version of aiokafka's produce request."""
    found = [kind for kind in vars(produce).values()
             if isinstance(kind, type) and issubclass(kind, RequestStruct) and getattr(kind, "API_KEY", None) == 0]  # fmt: skip
    return sorted(found, key=lambda kind: kind.API_VERSION)


def _encode(self: RequestStruct) -> bytes:
    return encode_flat(self.SCHEMA, [self.__dict__[name] for name in self.SCHEMA.names])


def encode_produce_requests_flat() -> None:
    """Makes every version of the produce request encode with one join (installing twice changes nothing)."""
    for kind in produce_requests():
        if kind.__dict__.get("encode") is not _encode:
            kind.encode = _encode
