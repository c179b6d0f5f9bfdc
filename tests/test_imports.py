"""Import boundaries: ``import nbexplain`` stays light, and the engine never imports widget code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nbexplain"
WIDGET_MODULES = ("ipywidgets", "anywidget", "ipycanvas", "nbexplain.widgets")


ENGINE_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for folder in ("engine", "methods")
    for path in (PACKAGE / folder).rglob("*.py")
)
PROBE = f"""
import importlib, json, sys
loaded = lambda: [m for m in {WIDGET_MODULES!r} if m in sys.modules]
answer = {{}}
import nbexplain as nbx
answer["after import nbexplain"] = loaded()
for name in {ENGINE_MODULES!r}:
    importlib.import_module(name)
answer["after the engine and methods"] = loaded()
try:
    nbx.Nope
except AttributeError as error:
    answer["unknown"] = str(error)
answer["names"] = [nbx.Explorer.__module__, nbx.Compare.__module__]
answer["after nbx.Explorer"] = loaded()
answer["all"] = sorted(nbx.__all__)
print(json.dumps(answer))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    """One fresh interpreter (importing torch takes seconds): what each step loaded."""
    command = [sys.executable, "-c", PROBE]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_nbexplain_loads_no_widget_code(probe):
    assert probe["after import nbexplain"] == []


def test_engine_and_methods_import_no_widget_code_at_run_time(probe):
    assert len(ENGINE_MODULES) > 10
    assert probe["after the engine and methods"] == []


def test_explorer_and_compare_load_on_first_use(probe):
    assert probe["names"] == ["nbexplain.widgets.explorer", "nbexplain.widgets.compare"]
    assert set(probe["after nbx.Explorer"]) == set(WIDGET_MODULES)
    assert {"Explorer", "Compare"} <= set(probe["all"])


def test_unknown_attribute_is_an_attribute_error(probe):
    assert "Nope" in probe["unknown"]


def imported_names(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_engine_and_methods_never_import_widgets_anywhere_in_their_source():
    """Also imports inside functions, which the run-time check cannot see."""
    offenders = {}
    for folder in ("engine", "methods"):
        for path in (PACKAGE / folder).rglob("*.py"):
            bad = {n for n in imported_names(path)
                   if n.split(".")[0] in WIDGET_MODULES or n.startswith("nbexplain.widgets")}
            if bad:
                offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_the_import_scanner_sees_relative_imports():
    path = PACKAGE / "widgets" / "explorer.py"
    assert "nbexplain.widgets.canvas.HeatmapCanvas" in imported_names(path)
    assert "nbexplain.engine.registry" in imported_names(path)
