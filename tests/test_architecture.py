"""The package layout holds its rules (docs/architecture.md): imports only go down the layers, and modules and
functions stay small enough to read."""

from __future__ import annotations

import ast

import pytest
from conftest import REPO, imported_modules

PACKAGE = REPO / "src" / "emoloom"
# subpackage -> the subpackages its modules may import (itself included)
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "modeling": {"core", "data", "modeling"},
    "evaluation": {"core", "data", "modeling", "evaluation"},
    "training": {"core", "data", "modeling", "evaluation", "training"},
    "inference": {"core", "data", "modeling", "evaluation", "inference"},
    "reporting": {"core", "reporting"},
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_only_go_down_the_layers(layer):
    wrong = {}
    for path in sorted((PACKAGE / layer).glob("*.py")):
        used = {layer_of(n) for n in imported_modules(path, f"emoloom.{layer}")} - {None}
        if used - ALLOWED[layer]:
            wrong[path.name] = sorted(used - ALLOWED[layer])
    assert wrong == {}, f"emoloom.{layer} may import only {sorted(ALLOWED[layer])}"


def test_every_module_lives_in_a_layer():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "cli.py"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED) | {"mappings"}


def test_modules_and_functions_stay_small():
    big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(PACKAGE)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert big == []
