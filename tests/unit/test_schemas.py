"""The checked-in schemas/ match the models; a change to a record model must regenerate them."""

from __future__ import annotations

from pathlib import Path

from incidentflow.schemas import generate, openapi_text

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_checked_in_schemas_match_the_models() -> None:
    generated = generate()
    on_disk = {p.name: p.read_text() for p in SCHEMAS.glob("*.schema.json")}
    assert on_disk.keys() == generated.keys(), "run `incidentflow schemas` and commit schemas/"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} drifted from the models: run `incidentflow schemas`"


def test_checked_in_openapi_document_matches_the_gateway() -> None:
    on_disk = (SCHEMAS.parent / "docs" / "openapi.json").read_text()
    assert on_disk == openapi_text(), "docs/openapi.json drifted: run `incidentflow schemas`"
