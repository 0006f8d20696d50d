"""Produce requests encoded with one join (runtime/wire.py): byte for byte what aiokafka writes."""

from __future__ import annotations

import random

import pytest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.struct import Struct

from incidentflow.runtime import wire
from incidentflow.runtime.install import install


def _request(seed: int) -> ProduceRequest:
    rnd = random.Random(seed)
    topics = [(f"ns.topic-{t}", [(p, rnd.randbytes(rnd.randrange(0, 3000))) for p in range(rnd.randrange(0, 9))])
              for t in range(rnd.randrange(0, 6))]  # fmt: skip
    return ProduceRequest(rnd.choice([None, "txn-é"]), rnd.choice([-1, 0, 1]), rnd.randrange(1, 60_000), topics)


def test_every_version_of_the_produce_request_is_known() -> None:
    versions = [kind.API_VERSION for kind in wire.produce_requests()]
    assert versions == list(range(len(versions)))
    assert len(versions) >= 8


@pytest.mark.parametrize("seed", range(20))
def test_a_produce_request_encodes_as_aiokafka_encodes_it(seed: int) -> None:
    install(256)
    for kind in wire.produce_requests():
        if kind.API_VERSION < 3 and seed % 2 == 0:
            continue
        request = _request(seed)
        if kind.API_VERSION < 3:
            request = ProduceRequest(None, request.required_acks, request._timeout, request._topics)  # noqa: SLF001
        built = request.build(kind)
        assert kind.encode is not Struct.encode  # installed
        assert built.encode() == Struct.encode(built)


def test_a_field_count_that_does_not_match_raises_as_aiokafka_does() -> None:
    kind = wire.produce_requests()[-1]
    with pytest.raises(ValueError, match="field count"):
        wire.encode_flat(kind.SCHEMA, [None, -1])
    with pytest.raises(ValueError, match="field count"):
        kind.SCHEMA.encode([None, -1])
