"""The modules of ``src/blocksft`` form a graph without cycles: every module sits above all it imports.

Every ``import`` statement counts, at module level or inside a function, so a deferred import cannot
hide a cycle. The graph is read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "blocksft"


def module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """{module: the project modules it imports}; ``from a import b`` names ``a.b`` when that is a module."""
    files = {module_name(path, package_dir): path for path in package_dir.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None; depth-first search with three colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"blocksft.config", "blocksft.models", "blocksft.models.hf", "blocksft.errors"} <= set(graph)
    assert "blocksft.data.collate" in graph["blocksft.config"]  # the graph does see project imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_errors_is_on_the_bottom_floor():
    assert import_graph()["blocksft.errors"] == set()


def test_the_checker_finds_a_cycle_even_through_a_deferred_import(tmp_path):
    package = tmp_path / "blocksft"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("def validate():\n    from blocksft.models import KINDS\n")
    (package / "models" / "__init__.py").write_text("from .hf import load\nKINDS = ()\n")
    (package / "models" / "hf.py").write_text("from blocksft.config import validate\n")
    graph = import_graph(package)
    assert find_cycle(graph) == ["blocksft.config", "blocksft.models", "blocksft.models.hf", "blocksft.config"]
    (package / "models" / "hf.py").write_text("import torch\n")
    assert find_cycle(import_graph(package)) is None


def test_train_py_validates_a_config_without_importing_lightning():
    """What train.py imports before it can refuse a config (``blocksft.run_identity``, which validates it) leaves
    Lightning and torchmetrics unloaded: a bad value is answered without their seconds of start-up."""
    code = ("import sys, blocksft.cli, blocksft.run_identity; "
            "print(sorted(m for m in ('lightning', 'torchmetrics', 'blocksft.run') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
