"""The import layers of STYLE.md hold: pyproject's import-linter contracts pass, every top-level
module has a layer, and no module of polyfuse takes part in an import cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

grimp = pytest.importorskip("grimp", reason="import-linter (the dev extra) is not installed")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "polyfuse"


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


def test_every_top_level_module_has_a_layer():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    present = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in SRC.glob("*/__init__.py")
    }
    assert present == placed, f"missing a layer: {sorted(present - placed)}; gone: {sorted(placed - present)}"


def test_no_import_cycles():
    graph = grimp.build_graph("polyfuse")
    cycles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == []
