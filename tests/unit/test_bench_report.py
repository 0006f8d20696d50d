"""bench/README.md is generated: every figure its template names is rendered from a benchmark's results."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench/bench_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_report", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def test_with_no_results_every_section_says_not_run(report: ModuleType) -> None:
    text = report.render(report.TEMPLATE.read_text())
    assert "{{" not in text
    assert text.count("| not run |") == len(re.findall(r"\{\{\w+\.table\}\}", report.TEMPLATE.read_text()))


def test_a_result_becomes_its_row_with_command_date_and_version(report: ModuleType, tmp_path: Path) -> None:
    result = {"benchmark": "startup", "command": "bench/startup.py --incidents 1000", "date": "2026-12-04T10:00:00+00:00",
              "version": "0.1.0 (abc1234)", "machine": "x86_64, 2 cores", "incidents": 1000,
              "aiokafka_read_seconds": 2.0, "cold_start_seconds": 5.0, "restored_incidents": 1000,
              "warm_start_seconds": 3.0}  # fmt: skip
    (tmp_path / "startup.json").write_text(json.dumps(result))
    text = report.render(report.TEMPLATE.read_text())
    assert (
        "| 2026-12-04 10:00 | 0.1.0 (abc1234) | `bench/startup.py --incidents 1000` | 1,000 | 2.0 s | **5.0 s** |"
        in text
    )
    assert "A cold start costs 2.5 times a plain read" in text


def test_the_committed_readme_is_what_the_results_give() -> None:
    spec = importlib.util.spec_from_file_location("bench_report_committed", REPO / "bench/bench_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (REPO / "bench/README.md").read_text() == module.render(module.TEMPLATE.read_text())
