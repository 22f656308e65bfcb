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
                return path[path.index(target) :] + [target]
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
    assert {"blocksft.config.validation", "blocksft.models", "blocksft.models.hf", "blocksft.errors"} <= set(graph)
    assert "blocksft.data.settings" in graph["blocksft.config.validation"]  # the graph does see project imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_errors_is_on_the_bottom_floor():
    assert import_graph()["blocksft.errors"] == set()


#: The rooms of the package, lowest floor first: a module imports only from its own room or lower floors, so
#: evaluation never imports training, runs (the orchestration) sits on top of the rest, and lm_eval (lm-eval's
#: model and tasks, which load a model as mode=eval does) above it.
FLOORS: dict[str, int] = {
    "errors": 0,
    "folders": 0,
    "masking": 1,
    "evaluation": 1,
    "data": 2,
    "models": 3,
    "training": 4,
    "config": 5,
    "runs": 6,
    "lm_eval": 7,
}


def room(module: str) -> str:
    """``blocksft.training.module`` -> ``training``; the package itself is its own room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "blocksft"


def test_every_room_has_a_floor_and_the_top_level_holds_few_modules():
    rooms = {room(module) for module in import_graph()} - {"blocksft"}
    assert rooms == set(FLOORS), f"rooms without a floor: {sorted(rooms - set(FLOORS))}"
    top_level = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
    assert len(top_level) <= 6, top_level


def test_every_import_goes_down_or_stays_in_its_room():
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if room(source) != room(target) and room(source) in FLOORS and FLOORS[room(target)] > FLOORS[room(source)]
    ]
    assert upward == []


def test_evaluation_never_imports_training():
    graph = import_graph()
    assert not [
        target
        for source in graph
        if room(source) == "evaluation"
        for target in graph[source]
        if room(target) == "training"
    ]


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
    """What train.py imports before it can refuse a config (``blocksft.runs.job``, whose ``plan_job`` validates it)
    leaves Lightning and torchmetrics unloaded: a bad value is answered without their seconds of start-up."""
    code = (
        "import sys, blocksft.runs.cli, blocksft.runs.identity, blocksft.runs.job; "
        "print(sorted(m for m in ('lightning', 'torchmetrics', 'blocksft.runs.run') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_no_function_in_the_package_is_over_80_lines():
    """A function reads in one sitting: none in ``src/blocksft`` runs over 80 lines (docstring included)."""
    long = []
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
