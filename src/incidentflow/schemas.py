"""JSON Schemas of every topic record, generated from the models (`incidentflow schemas`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from incidentflow.domain.envelope import RawEnvelope
from incidentflow.domain.events import AlertEvent, ChangeEvent
from incidentflow.domain.incident import Incident
from incidentflow.domain.records import Correlation, DeadLetterRecord, MetricRow

RECORDS: dict[str, type[BaseModel]] = {
    "raw": RawEnvelope,
    "alerts": AlertEvent,
    "changes": ChangeEvent,
    "incidents": Incident,
    "correlations": Correlation,
    "metrics": MetricRow,
    "deadletter": DeadLetterRecord,
}


def generate() -> dict[str, str]:
    """File name -> schema text, one per topic."""
    files = {}
    for topic, model in RECORDS.items():
        schema = model.model_json_schema(mode="serialization")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"incidentflow.{topic}", **schema}
        files[f"incidentflow.{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def openapi_text() -> str:
    from incidentflow.gateway.app import openapi_document

    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def write(directory: Path, openapi: Path) -> list[Path]:
    """Write the topic schemas into `directory` and the gateway's OpenAPI document to `openapi`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    openapi.parent.mkdir(parents=True, exist_ok=True)
    openapi.write_text(openapi_text())
    return [*written, openapi]
