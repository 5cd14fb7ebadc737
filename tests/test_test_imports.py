"""Test modules share code only through tests/support: no test module imports another test module
(or a conftest), so moving or deleting one test file never breaks another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SHARED = "tests.support"


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts[:-1])


def foreign_imports(source: str, package: str) -> list[str]:
    """The modules under tests/ outside tests/support that `source` (a module of `package`) imports,
    at any depth (function-level imports too), as `line: module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from tests import test_x` names modules, `from tests.x import y` names a module
            names = [f"{module}.{a.name}" for a in node.names] if module == "tests" else [module]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names
                  if (name == "tests" or name.startswith("tests.")) and not (
                      name == SHARED or name.startswith(SHARED + "."))]
    return found


def test_no_test_module_imports_another_test_module():
    problems = [f"{path.relative_to(TESTS.parent)}:{hit}"
                for path in sorted(TESTS.rglob("test_*.py"))
                for hit in foreign_imports(path.read_text(), _package_of(path))]
    assert problems == [], "move what is shared into tests/support:\n" + "\n".join(problems)


def test_the_check_sees_every_way_of_importing_a_test_module():
    planted = {
        "from tests.app.test_app_pages import APP": ["1: tests.app.test_app_pages"],
        "import tests.loadtest.test_loadtest_unit": ["1: tests.loadtest.test_loadtest_unit"],
        "from tests.conftest import make_settings": ["1: tests.conftest"],
        "from tests import test_docs": ["1: tests.test_docs"],
        "def f():\n    from tests.app.test_browser import running_app": ["2: tests.app.test_browser"],
        "from .test_browser import running_app": ["1: tests.app.test_browser"],
        "from ..loadtest import test_capacity": ["1: tests.loadtest"],
    }
    for source, expected in planted.items():
        assert foreign_imports(source, "tests.app") == expected, source
    allowed = ("from tests.support.waiting import wait_for\nimport tests.support.ports\n"
               "from tests import support\nfrom pipeline.settings import Settings\nimport pytest")
    assert foreign_imports(allowed, "tests.app") == []
