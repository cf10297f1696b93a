"""The package layers of docs/architecture.md hold in the code: imports only point down, only at
module level (heavy third-party imports deferred with a `# lazy:` comment excepted), and every
module imports on its own (no hidden import-order dependency or cycle)."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "anomalyforge"
DOC = REPO / "docs" / "architecture.md"


def doc_layers(text: str) -> dict[str, int]:
    """package -> layer number, from the '| layer | packages | ... |' table of the design note."""
    layers: dict[str, int] = {}
    for m in re.finditer(r"^\| (\d+) \| ([^|]+) \|", text, re.M):
        for name in re.findall(r"`(\w+)`", m.group(2)):
            layers[name] = int(m.group(1))
    return layers


def top_package(path: Path, pkg_root: Path = PKG) -> str:
    rel = path.relative_to(pkg_root)
    return rel.parts[0].removesuffix(".py")


def anomalyforge_imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, imported top-level package, inside a function?) for every import of anomalyforge."""
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "anomalyforge":
                parts = child.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in child.names]
                out.extend((child.lineno, n, in_func) for n in names)
            elif isinstance(child, ast.Import):
                out.extend((child.lineno, a.name.split(".")[1], in_func) for a in child.names
                           if a.name.startswith("anomalyforge."))
            visit(child, inner)

    visit(tree, False)
    return out


def layer_violations(pkg_root: Path, layers: dict[str, int]) -> list[str]:
    """Every import that points to a peer or a higher layer, or is made inside a function."""
    bad = []
    for path in sorted(pkg_root.rglob("*.py")):
        src = top_package(path, pkg_root)
        if src == "__init__":
            continue
        for line, tgt, in_func in anomalyforge_imports(ast.parse(path.read_text())):
            where = f"{path.relative_to(pkg_root.parent)}:{line}"
            if tgt == "__version__" or tgt == src:
                if in_func and tgt != src:
                    bad.append(f"{where}: function-local import of anomalyforge.{tgt}")
                continue
            if src not in layers or tgt not in layers:
                bad.append(f"{where}: {src} -> {tgt}: package missing from docs/architecture.md")
            elif layers[tgt] >= layers[src]:
                bad.append(f"{where}: {src} (layer {layers[src]}) imports {tgt} (layer {layers[tgt]})")
            elif in_func:
                bad.append(f"{where}: function-local import of anomalyforge.{tgt}")
    return bad


def unmarked_local_imports(pkg_root: Path) -> list[str]:
    """Function-local imports of anything without a `# lazy:` comment saying why."""
    bad = []
    for path in sorted(pkg_root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)) and "# lazy:" not in lines[sub.lineno - 1]:
                        bad.append(f"{path.relative_to(pkg_root.parent)}:{sub.lineno}: {lines[sub.lineno - 1].strip()}")
    return bad


def test_design_note_lists_every_package():
    layers = doc_layers(DOC.read_text())
    on_disk = {p.name.removesuffix(".py") for p in PKG.iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert on_disk == set(layers), (sorted(on_disk - set(layers)), sorted(set(layers) - on_disk))


def test_imports_point_down_the_layers_only():
    assert layer_violations(PKG, doc_layers(DOC.read_text())) == []


def test_function_local_imports_say_why():
    assert unmarked_local_imports(PKG) == []


def test_a_planted_upward_import_is_caught(tmp_path: Path):
    """The check itself works: a copy of the package with one upward import fails it."""
    copy = tmp_path / "anomalyforge"
    for path in PKG.rglob("*.py"):
        dest = copy / path.relative_to(PKG)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text())
    target = copy / "data" / "io.py"
    target.write_text(target.read_text() + "\nfrom anomalyforge.synth.base import Pair  # planted\n")
    local = copy / "metrics" / "pooling.py"
    local.write_text(local.read_text() + "\n\ndef _planted():\n    from anomalyforge.errors import DataError\n")
    bad = layer_violations(copy, doc_layers(DOC.read_text()))
    assert any("data/io.py" in b and "imports synth" in b for b in bad), bad
    assert any("metrics/pooling.py" in b and "function-local" in b for b in bad), bad


def _modules() -> list[str]:
    names = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        names.append(".".join(parts))
    return names


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_on_its_own(module: str):
    """Import one module with no other anomalyforge module loaded (third-party ones stay cached)."""
    saved = {k: v for k, v in sys.modules.items() if k == "anomalyforge" or k.startswith("anomalyforge.")}
    for k in saved:
        del sys.modules[k]
    try:
        importlib.import_module(module)
    finally:
        for k in [k for k in sys.modules if k == "anomalyforge" or k.startswith("anomalyforge.")]:
            del sys.modules[k]
        sys.modules.update(saved)
