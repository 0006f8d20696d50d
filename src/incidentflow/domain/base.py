"""What every domain module shares: the frozen value model, series keys and the environment of labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

M = TypeVar("M", bound=BaseModel)


class Value(BaseModel):
    """A frozen domain value: equal by content, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def json_of(value: BaseModel) -> bytes:
    """The JSON of a model, byte for byte what `model_dump_json` writes, as bytes and without that
    method's per-call overhead: the worker writes a few records and table values per event."""
    return value.__pydantic_serializer__.to_json(value)


def from_json(model: type[M], data: str | bytes) -> M:
    """A model read from JSON, as `model_validate_json` reads it (raises the same ValidationError)."""
    found: M = model.__pydantic_validator__.validate_json(data)
    return found


UNKNOWN = "unknown"


NO_SEVERITY = "-"


ENV_LABELS = ("env", "environment", "deployment.environment.name")
"""The labels that name an item's environment, the first one present winning."""


def series_key(metric: str, service: str, env: str, severity: str) -> str:
    """A series of a metric: one per (metric, service, env, severity); `-` where a metric has no severity."""
    return f"{metric}|{service}|{env}|{severity}"


def env_of(labels: Mapping[str, str]) -> str:
    """The environment of an item: its `env`, `environment` or `deployment.environment.name` label
    (the integration's static labels are among its labels), else `unknown`."""
    for name in ENV_LABELS:
        value = labels.get(name)
        if value:
            return value
    return UNKNOWN
