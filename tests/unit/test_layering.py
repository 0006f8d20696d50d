"""`domain/` and `sources/` stay pure: no I/O, clock, environment or randomness is imported there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "incidentflow"
FORBIDDEN_MODULES = {
    "os", "sys", "socket", "asyncio", "subprocess", "random", "uuid", "time", "logging", "pathlib",
    "faust", "mode", "aiokafka", "httpx", "fastapi", "starlette", "uvicorn", "prometheus_client", "yaml",
    "incidentflow.config", "incidentflow.gateway", "incidentflow.stream", "incidentflow.metrics", "incidentflow.topics",
}  # fmt: skip
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "uuid4", "getenv", "random"}
PURE = sorted([*SRC.joinpath("domain").glob("*.py"), *SRC.joinpath("sources").glob("*.py")])


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_module(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert not any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES), (
                f"{path.name} imports {name}"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls .{node.func.attr}()"
