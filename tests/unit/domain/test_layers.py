"""The domain's modules form layers: each imports only from the layers below it, never sideways or up.

A module that needs a peer's member means a concept sits in the wrong module; move it down instead
of adding an exception here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import incidentflow.domain

DOMAIN = Path(incidentflow.domain.__file__).parent
LAYERS: tuple[tuple[str, ...], ...] = (
    ("base", "sketch"),  # shared values and keys; the quantile sketch
    ("events",),  # what the sources say
    ("records", "envelope", "dora", "incident"),  # output records, the raw envelope, DORA levels, one incident
    ("aggregate", "metrics", "history", "report"),  # the incident fold, the series model, deployment history, report
    ("lead", "changes"),  # lead time from pushes, a change as the join of its events
    ("correlation",),  # changes matched with incidents
    ("change_fold",),  # what the change fold knows of a change, and its DORA figures
    ("contributions",),  # what incidents and changes contribute to the series
    ("series",),  # every contribution type, as the series stage reads them
)


def layer_of(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if module in layer)


def domain_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "incidentflow.domain":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("incidentflow.domain."):
            found.add((node.module or "").split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("incidentflow.domain."))
    return found


def test_every_domain_module_has_a_layer() -> None:
    modules = {path.stem for path in DOMAIN.glob("*.py")} - {"__init__"}
    placed = {module for layer in LAYERS for module in layer}
    assert modules == placed


def violations(paths: list[Path]) -> list[str]:
    return [
        f"{path.stem} (layer {layer_of(path.stem)}) imports {imported} (layer {layer_of(imported)})"
        for path in paths
        for imported in sorted(domain_imports(path))
        if layer_of(imported) >= layer_of(path.stem)
    ]


def test_domain_modules_import_only_from_layers_below() -> None:
    assert violations([path for path in sorted(DOMAIN.glob("*.py")) if path.stem != "__init__"]) == []


def test_the_rule_finds_sideways_and_upward_imports(tmp_path: Path) -> None:
    module = tmp_path / "metrics.py"
    module.write_text(
        "from incidentflow.domain.history import Derived\nfrom incidentflow.domain import series, sketch\n"
    )
    assert violations([module]) == [
        "metrics (layer 3) imports history (layer 3)",
        "metrics (layer 3) imports series (layer 8)",
    ]
