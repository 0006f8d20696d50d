"""Produce requests written with one copy of the records they carry.

aiokafka encodes a request by joining the encoding of each of its fields, level by level: a record
batch is copied once by the partition that holds it, again by the partition array, the topic, the
topic array and the request, and twice more by the connection (the header, then the size). A
worker produces several records per input record (changelogs, stage records, outputs), in
requests of a megabyte or more, and each copy of a buffer that large is a fresh mapping of memory
(runtime/heap.py), so those copies cost about 5% of its CPU per record in
`bench/fold_throughput.py`. Here a produce request's size, header and fields are encoded into one
list of parts, record batches as they are, and joined once: byte for byte what aiokafka writes
(tests/unit/runtime/test_wire.py holds the two equal for every version of the request). Every
other request goes through aiokafka's own `send`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol import produce
from aiokafka.protocol.api import RequestStruct
from aiokafka.protocol.types import Array, Bytes, Int32, Schema
from aiokafka.util import wait_for

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


def install() -> None:
    """Makes the connection write produce requests with one join (installing twice changes nothing)."""
    if getattr(AIOKafkaConnection.send, "_incidentflow_guard", False):
        return
    original = AIOKafkaConnection.send

    def send(self: Any, request: Any, expect_response: bool = True) -> Any:  # noqa: FBT001, FBT002  # aiokafka's signature
        if request.API_KEY != produce.ProduceRequest.API_KEY or self._writer is None:
            return original(self, request, expect_response)
        # aiokafka's `send`, its message made with one join (see the module's docstring)
        request_struct = request.prepare(self._versions)
        correlation_id = self._next_correlation_id()
        header = request_struct.build_request_header(correlation_id=correlation_id, client_id=self._client_id)
        parts = [b"", header.encode()]
        _parts(request_struct.SCHEMA, [request_struct.__dict__[name] for name in request_struct.SCHEMA.names], parts)
        parts[0] = struct.pack(">i", sum(map(len, parts)))
        try:
            self._writer.write(b"".join(parts))
        except OSError as err:
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(f"Connection at {self._host}:{self._port} broken: {err}") from err
        if not expect_response:
            return self._writer.drain()
        fut = self._loop.create_future()
        self._requests.append((correlation_id, request_struct, fut))
        return wait_for(fut, self._request_timeout)

    send._incidentflow_guard = True  # type: ignore[attr-defined]
    send.__wrapped__ = original  # type: ignore[attr-defined]  # what runtime/upstream.py fingerprints
    AIOKafkaConnection.send = send
