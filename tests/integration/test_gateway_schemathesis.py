"""Schemathesis against the gateway's own OpenAPI document, with a real Kafka behind it.

No operation may answer 5xx or answer outside its documented responses and schemas. Path tokens
are mostly replaced by valid ones, so generated bodies reach validation and Kafka, not only 401.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.integration.conftest import Stack, stop_all

# One gateway for the module in each pytest-xdist worker that runs some of its operations.
pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
# 413 is a rejection too: the body-size limit (512 KiB) is documented but not expressible in JSON Schema.
CONFIG = SchemathesisConfig.from_str("""
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 413, 422, 429]
[checks.positive_data_acceptance]
expected-statuses = ["2XX", 401, 403, 413, 429]
""")
schema = schemathesis.openapi.from_path(DOC, config=CONFIG)
SOURCES = [
    "elven",
    "sleuth",
    "uptrends",
    "flashduty-alert",
    "flashduty-change",
    "native",
    "alertmanager",
    "pagerduty",
    "github",
    "gitlab",
]
TOKENS = {s: f"st-{s}-token-0123456789" for s in SOURCES}
INTEGRATIONS = "integrations:\n" + "".join(
    f"  - {{name: st-{s}, source: {s}, token: {t}, rate_limit_per_minute: 1000000}}\n" for s, t in TOKENS.items()
)


def source_of(path: str) -> str | None:
    for s in SOURCES:
        route = "/v1/events" if s == "native" else "/v1/ingest/" + s.replace("-", "/")
        if path == route or path.startswith(route + "/"):
            return s
    return None


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    (workdir / "integrations.yaml").write_text(INTEGRATIONS)
    stack = Stack(kafka_bootstrap, "it-schemathesis", workdir, workdir / "integrations.yaml", partitions=2)
    stack.start_gateway()
    yield stack
    stop_all(stack.processes)


@schema.parametrize()
@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_document(case: Any, gateway: Stack) -> None:
    source = source_of(case.path)
    if source and case.path_parameters and "token" in case.path_parameters:
        if zlib.crc32(repr(case.body).encode()) % 5:  # most with a valid token, some with the generated one
            case.path_parameters["token"] = TOKENS[source]
    elif source:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS[source]}"}
    case.call_and_validate(base_url=gateway.gateway_url)
