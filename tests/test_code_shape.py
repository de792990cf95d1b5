"""The shape issue 15 gave the code, kept: thin assets, engines without Dagster.

An asset reads its partition and inputs, calls an engine and reports; the engines reach models
only through ``chara_resources.models.Models`` and import no Dagster, so they run (and are
tested) without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from chara_resources.settings import PROJECT_ROOT

MAX_ASSET_LINES = 80
ENGINES = (
    "chara_resources.models",
    "chara_resources.languages",
    "chara_assets.voice.voicing",
    "chara_assets.voice.verification",
    "chara_assets.voice.selection",
    "chara_assets.voice.training",
    "chara_assets.paraphrase.engine",
    "chara_assets.identification.engine",
    "chara_assets.identification.planning",
)


def _is_asset_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in ("asset", "multi_asset", "graph_asset")


def _asset_functions() -> list[tuple[str, int]]:
    found = []
    for path in sorted((PROJECT_ROOT / "chara_assets").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                _is_asset_decorator(d) for d in node.decorator_list
            ):
                where = f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}"
                found.append((where, node.end_lineno - node.lineno + 1))
    return found


def test_every_asset_function_is_thin() -> None:
    functions = _asset_functions()
    assert len(functions) >= 20  # the scan finds the assets (a broken scan passes nothing)
    long = [f"{where}: {lines} lines" for where, lines in functions if lines > MAX_ASSET_LINES]
    assert not long, f"asset functions over {MAX_ASSET_LINES} lines (def to end): {long}"


def test_the_scan_sees_a_long_asset(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_ASSET_LINES))
    tree = ast.parse(f"@dg.asset(group_name='g')\ndef big():\n{body}\n")
    node = tree.body[0]
    assert _is_asset_decorator(node.decorator_list[0])
    assert node.end_lineno - node.lineno + 1 > MAX_ASSET_LINES


def test_engines_import_without_dagster() -> None:
    # one fresh interpreter: after each import, is dagster loaded? The first True names the
    # engine that pulled it in.
    code = (
        "import importlib, sys\n"
        f"for m in {list(ENGINES)!r}:\n"
        "    importlib.import_module(m); print(m, 'dagster' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    loaded = [line.split()[0] for line in done.stdout.splitlines() if line.endswith("True")]
    assert len(done.stdout.splitlines()) == len(ENGINES)
    assert not loaded, f"{loaded[0]} imports dagster"
