"""No import cycles in `pipeline/`, counting the imports inside functions (they hide a cycle, not cut it).

The graph is read statically (ast): one edge per `import x` / `from x import y` anywhere in
a module (top level, function, class, try, and ``if TYPE_CHECKING:`` too: a module that
needs another's types depends on it), where ``from pkg import name`` points at ``pkg.name``
when that is a module of the tree, else at ``pkg``. Only modules of the tree are nodes.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every .py under `root`/`package` (a package is its __init__)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, wherever it stands."""
    return (node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom))


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the tree that module `name` (file `path`) imports."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_pipeline_has_no_import_cycle():
    graph = import_graph(ROOT, "pipeline")
    assert len(graph) > 50 and graph["pipeline.job.spark"], "the graph was not read"  # the check looks at the tree
    assert cycles(graph) == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "login.py": """
            from pkg.errors import Error

            def start():
                from pkg.runs import runner   # the hidden edge
                return runner.launch()
            """,
        "errors.py": "class Error(Exception): ...\n",
        "runs/__init__.py": "",
        "runs/runner.py": "from .control import Control\n",
        "runs/control.py": "import pkg.login\n",
        "leaf.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import login\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import typed_back\n",
        "typed_back.py": "from pkg.typed import x\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.login"] == {"pkg.errors", "pkg.runs.runner"}
    assert graph["pkg.runs.runner"] == {"pkg.runs.control"} and graph["pkg.leaf"] == {"pkg.login"}
    # a cycle only for the type checker is still a tangle: it counts
    assert cycles(graph) == [["pkg.login", "pkg.runs.control", "pkg.runs.runner"], ["pkg.typed", "pkg.typed_back"]]


def test_no_cycle_when_the_hidden_edge_is_gone(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def f():\n    from pkg.c import g\n",
        "c.py": "import os\n",
    })
    graph = import_graph(root, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert cycles(graph) == []


def test_the_login_depends_on_nothing_but_errors_and_settings():
    """The capture side and the load test may use the login's rules, never the other way round."""
    graph = import_graph(ROOT, "pipeline")
    base = {"pipeline.errors", "pipeline.settings"}
    assert graph["pipeline.auth.login"] <= base
    assert graph["pipeline.auth.loopback"] <= base | {"pipeline.auth.login"}
    assert not any(m.startswith("pipeline.auth") for m in graph["pipeline.emulator.control"])
