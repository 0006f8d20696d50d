"""What every domain module shares: the frozen value model, series keys and the environment of labels."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict


class Value(BaseModel):
    """A frozen domain value: equal by content, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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
