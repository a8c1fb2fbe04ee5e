"""The package's shape: no import cycle, and the analyses never reach the training stack.

Read from the source with ast (nothing is imported), counting imports inside functions too: a lazy
import is still a dependency, only a later one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gapbench": ROOT / "src" / "gapbench", "gapbench.tasks": ROOT / "tasks"}  # pyproject's package-dir


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            found.setdefault(name, path)  # gapbench.tasks is tasks/, not a folder under src/gapbench
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """Every module `name` imports, gapbench's by module name (`from gapbench.x import y` is
    gapbench.x.y when y is a module) and others by their top-level name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name if a.name in MODULES else a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in MODULES else base if base in MODULES or base.startswith("gapbench")
                        else base.split(".")[0])
    return out - {name}


GRAPH = {name: imports(name) for name in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_module_list_is_the_package():
    assert {"gapbench.train.job", "gapbench.results", "gapbench.report", "gapbench.tasks.copy",
            "gapbench.cells.lstm", "gapbench.config.identity"} <= set(MODULES)


def test_every_gapbench_import_names_a_module_that_exists():
    """A module moved without its importers updated (a lazy import fails only when it runs)."""
    missing = {f"{name} imports {dep}" for name, deps in GRAPH.items() for dep in deps
               if dep.startswith("gapbench") and dep not in MODULES}
    assert not missing, sorted(missing)


def test_no_import_cycle():
    """Depth-first search for a back edge; the message names the cycle."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node] & set(MODULES)):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(MODULES):
        if node not in state:
            visit(node)


ANALYSIS = sorted(m for m in MODULES if m.startswith(("gapbench.analysis", "gapbench.report", "gapbench.results")))


@pytest.mark.parametrize("name", ANALYSIS)
def test_analysis_never_reaches_training_or_lightning(name):
    """The report, the analyses and the results store read rows: they must run where no training
    stack is installed or wanted (a laptop reading a cluster's store)."""
    reached = reachable(name)
    training = sorted(m for m in reached if m.startswith("gapbench.train") or m == "gapbench.__main__")
    assert not training, f"{name} reaches {training}"
    assert not reached & {"lightning", "pytorch_lightning"}, f"{name} reaches Lightning"
