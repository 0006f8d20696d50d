"""The CloudEvents headers of output records, read back with the CloudEvents SDK (Kafka binding)."""

from __future__ import annotations

import json

from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat

from incidentflow.stream.app import cloud_event_headers
from incidentflow.topics import Topics


def test_an_output_record_is_a_cloudevent_in_binary_mode() -> None:
    headers = cloud_event_headers(Topics("acme"))
    value = json.dumps({"aggregate_id": "shop:k1", "status": "open"}).encode()
    found = headers.of("acme.incidents", b"shop:k1", value)
    assert found is not None
    event = kafka.from_binary(kafka.KafkaMessage(dict(found), b"shop:k1", value), JSONFormat())
    assert (event.get_type(), event.get_source(), event.get_subject()) == (
        "dev.incidentflow.incident.v1", "/incidentflow/acme", "shop:k1"
    )  # fmt: skip
    assert event.get_data() == {"aggregate_id": "shop:k1", "status": "open"}
    assert event.get_datacontenttype() == "application/json"


def test_the_same_record_is_the_same_event_and_internal_topics_get_no_headers() -> None:
    headers = cloud_event_headers(Topics("acme"))
    one, again = headers.of("acme.metrics", b"k", b"{}"), headers.of("acme.metrics", b"k", b"{}")
    other = headers.of("acme.metrics", b"k", b'{"count":1}')
    ids = [dict(h or [])["ce_id"] for h in (one, again, other)]
    assert ids[0] == ids[1] != ids[2]
    assert headers.of("acme.correlation-scope", b"k", b"{}") is None
    assert headers.of("acme.incidents", b"k", None) is None
