"""The CloudEvents Kafka binding's headers on the records a worker publishes.

Every record of an output topic carries `ce_specversion`, `ce_id`, `ce_source`, `ce_type`,
`ce_subject` (the record's key) and `content-type`, so that a consumer can read it with any
CloudEvents SDK in binary mode (the record's value is the event's JSON data). `ce_id` is a hash of
the topic, key and value: a record sent again with the same content (a stage redoing a batch after
a crash) is the same event, which a consumer may drop as a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]

_STATIC = (("ce_specversion", b"1.0"), ("content-type", b"application/json"))


@dataclass(frozen=True)
class CloudEventHeaders:
    """The headers of each output topic's records; topics not named here get none."""

    source: str
    """`ce_source` of every record: a URI reference naming the deployment."""
    types: Mapping[str, str]
    """Topic -> `ce_type` of its records."""
    _encoded: dict[str, bytes] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._encoded.update({topic: ce_type.encode() for topic, ce_type in self.types.items()})

    def of(self, topic: str, key: bytes, value: bytes | None) -> Headers | None:
        """The headers of a record, or None for a topic without a type (or a tombstone, which is no event)."""
        ce_type = self._encoded.get(topic)
        if ce_type is None or value is None:
            return None
        digest = hashlib.blake2b(topic.encode(), digest_size=16)
        for part in (key, value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return [*_STATIC, ("ce_id", digest.hexdigest().encode()), ("ce_source", self.source.encode()),
                ("ce_type", ce_type), ("ce_subject", key)]  # fmt: skip
