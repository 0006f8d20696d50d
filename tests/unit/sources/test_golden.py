"""Golden files: every fixture body of every source gives exactly the canonical events beside it.

Run with UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from incidentflow import sources

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECEIVED = datetime(2026, 11, 1, 12, 0, 5, tzinfo=UTC)
SOURCE_OF_DIR = {"elven": "elven", "native": "native", "sleuth": "sleuth", "uptrends": "uptrends",
                 "flashduty-alert": "flashduty-alert", "flashduty-change": "flashduty-change",
                 "cloudevents": "cloudevents", "alertmanager": "alertmanager", "pagerduty": "pagerduty",
                 "github": "github", "gitlab": "gitlab"}  # fmt: skip

BODIES = sorted(p for p in FIXTURES.glob("*/*.json") if not p.name.endswith((".golden.json", ".context.json")))


def context_for(body: Path) -> sources.Context:
    extra_file = body.with_name(body.name.replace(".json", ".context.json"))
    extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    return sources.Context(
        integration=f"fixture-{body.parent.name}",
        source=SOURCE_OF_DIR[body.parent.name],
        received_at=RECEIVED,
        request_id="req-fixture",
        labels={"env": "prod", "team": "sre"},
        default_severity="high",
        idempotency_key=extra.get("idempotency_key"),
        max_labels=50,
        headers=extra.get("headers", {}),
    )


@pytest.mark.parametrize("body", BODIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_matches_golden(body: Path) -> None:
    ctx = context_for(body)
    events = sources.parse(ctx.source, sources.decode(body.read_bytes()), ctx)
    got = [json.loads(e.model_dump_json()) for e in events]
    golden = body.with_name(body.name.replace(".json", ".golden.json"))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"no golden file for {body}; run with UPDATE_GOLDEN=1 and review it"
    assert got == json.loads(golden.read_text())


def test_every_source_with_an_adapter_has_fixtures() -> None:
    covered = {SOURCE_OF_DIR[p.parent.name] for p in BODIES}
    assert set(sources.ADAPTERS) <= covered
