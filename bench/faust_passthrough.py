"""The least a Faust worker does: one agent that forwards each record of a topic to another, unchanged.

    FLOOR_BOOTSTRAP=127.0.0.1:39092 FLOOR_SOURCE=t.alerts FLOOR_SINK=t.floor FLOOR_GROUP=g \\
        .venv/bin/python bench/faust_passthrough.py worker -l warn

A baseline for `bench/fold_throughput.py`, run as a process of its own on the same broker and
records: it takes records in batches as the incidentflow worker does (`Runtime.consume`: the same
batch size and wait), sends each straight to the producer (acks=all) and lets Faust commit, so
its rate is Faust's own cost per record, which no worker built on Faust can beat.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from incidentflow.runtime.harness import BATCH_MAX, BATCH_WITHIN_SECONDS

SOURCE, SINK = os.environ["FLOOR_SOURCE"], os.environ["FLOOR_SINK"]
app = faust.App(
    os.environ["FLOOR_GROUP"],
    broker=f"kafka://{os.environ['FLOOR_BOOTSTRAP']}",
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    web_port=int(os.environ.get("FLOOR_WEB_PORT", "16098")),
    topic_allow_declare=False,
    broker_commit_interval=1.0,
    stream_wait_empty=True,
    datadir=os.environ.get("FLOOR_DATA_DIR", ".floor-data"),
)
source = app.topic(SOURCE, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def forward(stream: Any) -> None:
    """Runs for every batch of records: each is sent on, unchanged."""
    async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
        for event in events:
            message = event.message
            await app.producer.send(SINK, message.key, message.value, partition=None, timestamp=None, headers=None)


if __name__ == "__main__":
    app.main()
