"""Produce requests written with one join (runtime/wire.py): byte for byte what aiokafka writes."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.struct import Struct

from incidentflow.runtime import wire
from incidentflow.runtime.install import install


def _request(seed: int, transactional: bool) -> ProduceRequest:
    rnd = random.Random(seed)
    topics = [(f"ns.topic-{t}", [(p, rnd.randbytes(rnd.randrange(0, 3000))) for p in range(rnd.randrange(0, 9))])
              for t in range(rnd.randrange(0, 6))]  # fmt: skip
    return ProduceRequest("txn-é" if transactional else None, rnd.choice([-1, 0, 1]), rnd.randrange(1, 60_000), topics)


class Writer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def drain(self) -> None:
        return None


class Connection:
    """What aiokafka's `send` uses of its connection, for one version of the produce request."""

    def __init__(self, version: int) -> None:
        self._writer = Writer()
        self._versions = {ProduceRequest.API_KEY: (version, version), MetadataRequest.API_KEY: (0, 0)}
        self._client_id, self._host, self._port = "incidentflow", "127.0.0.1", 9092
        self._requests: collections.deque[Any] = collections.deque()
        self._request_timeout = 30.0
        self._loop = asyncio.new_event_loop()
        self._correlation = 0

    def _next_correlation_id(self) -> int:
        self._correlation += 1
        return self._correlation


def test_every_version_of_the_produce_request_is_known() -> None:
    versions = [kind.API_VERSION for kind in wire.produce_requests()]
    assert versions == list(range(len(versions)))
    assert len(versions) >= 8


@pytest.mark.parametrize("seed", range(10))
def test_a_produce_request_is_written_as_aiokafka_writes_it(seed: int) -> None:
    install(256)
    assert getattr(AIOKafkaConnection.send, "_incidentflow_guard", False)
    aiokafkas = AIOKafkaConnection.send.__wrapped__  # type: ignore[attr-defined]
    for kind in wire.produce_requests():
        request = _request(seed, transactional=kind.API_VERSION >= 3 and seed % 2 == 0)
        built = request.build(kind)
        assert wire.encode_flat(kind.SCHEMA, [built.__dict__[n] for n in kind.SCHEMA.names]) == Struct.encode(built)
        ours, theirs = Connection(kind.API_VERSION), Connection(kind.API_VERSION)
        try:
            aiokafkas(theirs, request, expect_response=False)
        except NotImplementedError:  # a version aiokafka does not send yet: nor do we
            with pytest.raises(NotImplementedError):
                AIOKafkaConnection.send(ours, request, expect_response=False)  # type: ignore[arg-type]
            continue
        AIOKafkaConnection.send(ours, request, expect_response=False)  # type: ignore[arg-type]
        assert ours._writer.written == theirs._writer.written and len(ours._writer.written) == 1


def test_a_produce_request_that_expects_an_answer_waits_for_it_as_aiokafka_does() -> None:
    install(256)
    connection = Connection(7)
    waiting = AIOKafkaConnection.send(connection, _request(1, transactional=False))  # type: ignore[arg-type]
    [(correlation_id, request_struct, answer)] = connection._requests
    assert correlation_id == 1 and request_struct.API_VERSION == 7 and not answer.done()
    answer.set_result("answered")
    assert connection._loop.run_until_complete(waiting) == "answered"
    connection._loop.close()


def test_every_other_request_goes_through_aiokafkas_send() -> None:
    install(256)
    ours, theirs = Connection(7), Connection(7)
    AIOKafkaConnection.send(ours, MetadataRequest([]), expect_response=False)  # type: ignore[arg-type]
    AIOKafkaConnection.send.__wrapped__(theirs, MetadataRequest([]), expect_response=False)  # type: ignore[attr-defined]
    assert ours._writer.written == theirs._writer.written and len(ours._writer.written) == 1


def test_a_field_count_that_does_not_match_raises_as_aiokafka_does() -> None:
    kind = wire.produce_requests()[-1]
    with pytest.raises(ValueError, match="field count"):
        wire.encode_flat(kind.SCHEMA, [None, -1])
    with pytest.raises(ValueError, match="field count"):
        kind.SCHEMA.encode([None, -1])
