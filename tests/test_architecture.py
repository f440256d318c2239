"""The import boundaries of DEVELOPERS.md, checked from the source with `ast`.

* statemachine/ imports only the standard library and msgspec, and none of the modules
  that do I/O, read a clock, make randomness or start threads;
* journal/ imports nothing of statemachine/, replica/, snapshots/, tools/;
* snapshots/ imports nothing of statemachine/, journal/, replica/, tools/;
* replica/ does not import tools/; nothing outside tools/ (and tests) imports tools/.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"statemachine", "journal", "replica", "snapshots", "tools"}

# Standard-library modules that would let the state machine do I/O, read a clock,
# draw randomness, start threads or read the environment.
FORBIDDEN_IN_STATEMACHINE = {
    "os", "io", "sys", "time", "datetime", "random", "secrets", "socket", "select",
    "selectors", "asyncio", "threading", "multiprocessing", "concurrent", "subprocess",
    "pathlib", "shutil", "tempfile", "signal", "uuid", "logging", "mmap", "fcntl",
    "glob", "pickle", "sqlite3", "urllib", "http", "ssl", "ctypes", "gc",
}


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_has_source():
    for package in ("statemachine", "journal", "replica", "snapshots", "tools"):
        assert (ROOT / package / "__init__.py").exists(), package


# The one exception: core_mode.py reads one environment variable at import (which core,
# compiled or pure Python, runs; neither changes what is computed).
CORE_MODE_MODULE = "core_mode.py"


def test_statemachine_imports_only_stdlib_and_msgspec_and_no_io():
    stdlib = sys.stdlib_module_names
    for path in package_files("statemachine"):
        for name in imported_top_modules(path):
            if name in ("statemachine", "msgspec", "__future__"):
                continue
            if path.name == CORE_MODE_MODULE and name == "os":
                continue
            assert name in stdlib, f"{path.name} imports non-stdlib module {name}"
            assert name not in FORBIDDEN_IN_STATEMACHINE, f"{path.name} imports {name}: no I/O, clock, randomness or threads"


def test_statemachine_uses_no_float():
    for path in package_files("statemachine"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant):
                assert not isinstance(node.value, float), f"{path.name}:{node.lineno} float literal"
            if isinstance(node, ast.Name):
                assert node.id != "float", f"{path.name}:{node.lineno} uses float"
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, ast.Div), f"{path.name}:{node.lineno} true division"


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("journal", {"statemachine", "replica", "snapshots", "tools"}),
        ("snapshots", {"statemachine", "journal", "replica", "tools"}),
        ("replica", {"tools"}),
        ("statemachine", {"journal", "replica", "snapshots", "tools"}),
    ],
)
def test_package_import_boundaries(package, forbidden):
    for path in package_files(package):
        bad = imported_top_modules(path) & forbidden
        assert not bad, f"{package}/{path.name} imports {sorted(bad)}"


def test_snapshots_import_only_stdlib_and_lmdb():
    for path in package_files("snapshots"):
        for name in imported_top_modules(path):
            assert name in sys.stdlib_module_names or name in ("lmdb", "snapshots", "__future__"), (
                f"snapshots/{path.name} imports {name}"
            )


def test_journal_imports_only_stdlib_and_crc32c():
    for path in package_files("journal"):
        for name in imported_top_modules(path):
            assert name in sys.stdlib_module_names or name in ("crc32c", "journal", "__future__"), (
                f"journal/{path.name} imports {name}"
            )


def test_every_module_starts_with_a_docstring():
    for package in PROJECT_PACKAGES:
        for path in package_files(package):
            tree = ast.parse(path.read_text())
            assert ast.get_docstring(tree), f"{package}/{path.name} has no module docstring"


# The replica modules whose logic the simulator drives: state and messages in, actions
# out. They must not do I/O, read a clock or start threads on their own, or a simulated
# run would stop being a function of its seed.
SANS_IO_CORES = ("primary.py", "standby.py", "replication.py", "client_core.py", "feed.py")
FORBIDDEN_IN_CORES = FORBIDDEN_IN_STATEMACHINE


@pytest.mark.parametrize("module", SANS_IO_CORES)
def test_the_sans_io_cores_do_no_io(module):
    names = imported_top_modules(ROOT / "replica" / module)
    bad = names & FORBIDDEN_IN_CORES
    assert not bad, f"replica/{module} imports {sorted(bad)}: a sans-I/O core does no I/O, reads no clock"


def test_the_core_mode_module_reads_only_its_environment_variable():
    """core_mode.py may use `os` for nothing but `os.environ.get(PURE_PYTHON_VARIABLE, ...)`."""
    tree = ast.parse((ROOT / "statemachine" / CORE_MODE_MODULE).read_text())
    uses = [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "os"]
    calls = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and ast.unparse(node.func) == "os.environ.get"
        and isinstance(node.args[0], ast.Name) and node.args[0].id == "PURE_PYTHON_VARIABLE"
    ]
    # The only mention of `os` is that one call (the import statement is not a Name).
    assert len(calls) == 1 and len(uses) == 1
