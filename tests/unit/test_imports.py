"""The house's import rules, as tests: the import-linter contracts in setup.cfg hold, and no module
imports one of ours inside a function (only heavy or optional libraries may be delayed there)."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge"

#: Libraries a function may import late: slow to import (so `cibridge --help` and the web workers
#: stay light) or optional (psycopg comes with the postgres extra).
HEAVY = {"git", "jenkins", "boto3", "botocore", "gunicorn", "prometheus_client", "requests",
         "psycopg", "sqlalchemy", "werkzeug", "flask", "jsonschema", "readline", "pty", "termios"}


#: The modules that import one of ours by name (importlib), and why: nothing else may.
IMPORT_BY_NAME = {
    "bridge/targets/__init__.py": "a target kind's class, named by string, imported when a rule uses it",
    "bridge/cli/lazy.py": "a `cibridge` command's module, imported when the command runs (click's "
                          "LazyGroup): `cibridge --version` and `--help` stay fast",
    "bridge/service/supervisor.py": "the store, imported only in the child `cibridge serve` forks to "
                                    "create the schema: the long-lived supervisor never loads "
                                    "SQLAlchemy (some 20 MiB)",
}


def imports_by_name(path: Path) -> list[int]:
    """Lines of the file calling importlib.import_module, import_module or __import__."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))]


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function or method of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_function and isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                found.append((child.lineno, "." * child.level + (child.module or "")))
            visit(child, inside)

    visit(tree, False)
    return found


def ours(module: str) -> bool:
    return module.startswith(".") or module == "bridge" or module.startswith("bridge.")


def test_no_function_imports_one_of_our_modules():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {module}"
                 for path in sorted(BRIDGE.rglob("*.py"))
                 for line, module in function_level_imports(path) if ours(module)]
    assert offenders == [], "import these at the top of the module:\n" + "\n".join(offenders)


def test_only_the_allowed_modules_import_by_name():
    found = {str(path.relative_to(ROOT)) for path in sorted(BRIDGE.rglob("*.py")) if imports_by_name(path)}
    assert found == set(IMPORT_BY_NAME), "import by name only where IMPORT_BY_NAME says why"


def test_only_heavy_libraries_are_imported_late():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {module}"
                 for path in sorted(BRIDGE.rglob("*.py"))
                 for line, module in function_level_imports(path)
                 if not ours(module) and module.split(".")[0] not in HEAVY
                 and module.split(".")[0] not in sys.stdlib_module_names]
    assert offenders == [], "\n".join(offenders)


def test_the_checker_sees_a_planted_function_import(tmp_path):
    planted = tmp_path / "m.py"
    planted.write_text("import os\n\ndef f():\n    from bridge.rules import RuleSet\n    import git\n")
    assert function_level_imports(planted) == [(4, "bridge.rules"), (5, "git")]


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -r requirements/test.lock)")
    out = subprocess.run([lint, "--config", str(ROOT / "setup.cfg")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
