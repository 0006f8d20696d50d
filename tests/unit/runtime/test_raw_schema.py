"""The stages' topics hand over each record's key, value and headers as Faust's raw `bytes` schema does."""

from __future__ import annotations

import asyncio

import faust
from faust.types import Message

from incidentflow.runtime.harness import RawSchema


def test_the_raw_schema_makes_the_event_faust_makes_for_raw_bytes() -> None:
    app = faust.App("raw-schema-test", broker="kafka://127.0.0.1:1")
    faust_topic = app.topic("t", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    raw_topic = app.topic("t", schema=RawSchema())
    messages = [
        Message("t", 3, 7, 0.0, 0, [("ce-type", b"x")], b"key", b'{"a": 1}', None),
        Message("t", 0, 8, 0.0, 0, [], None, b"value", None),
        Message("t", 1, 9, 0.0, 0, [], b"tombstone", None, None),
        Message("t", 2, 10, 0.0, 0, [], b"", b"", None),
    ]

    async def both(message: Message) -> tuple[faust.types.EventT, faust.types.EventT]:
        return await faust_topic.decode(message, propagate=True), await raw_topic.decode(message, propagate=True)

    for message in messages:
        expected, event = asyncio.run(both(message))
        assert type(event) is type(expected)
        assert (event.key, event.value, event.headers, event.message) == (
            expected.key, expected.value, expected.headers, expected.message
        )  # fmt: skip
        assert event.message is message
    assert (raw_topic.key_type, raw_topic.value_type) == (bytes, bytes)
