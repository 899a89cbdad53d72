"""The layout is the architecture: these tests keep it so.

- every check is one module ``checks/<area>/<name>.py`` holding ``check_<name>`` and nothing
  another check borrows;
- ``checks/`` judges: it imports no library that does I/O (observations come from
  ``harness/probes/``);
- no module of the auditor or the reference service is over 600 lines;
- no import cycle among the project's modules, imports inside functions included;
- the auditor (``harness``, ``checks``) never imports the reference service.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.checkdir import CHECKS_DIR, NOT_CHECKS, check_areas, declared_checks

ROOT = CHECKS_DIR.parent
PACKAGES = ("harness", "checks", "system_under_test")
MAX_LINES = 600
#: Libraries whose use is I/O: the network, processes, threads, the HSM, the Docker engine.
IO_LIBRARIES = frozenset({
    "psycopg", "redis", "httpx", "requests", "urllib.request", "http.client", "socket", "ssl",
    "sslyze", "subprocess", "multiprocessing", "threading", "concurrent", "asyncio", "selectors",
    "docker", "pkcs11", "shutil",
})


def _modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name ``tree`` imports, at any depth (relative imports resolved)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_area_is_a_folder_of_one_check_per_module() -> None:
    assert check_areas(), "no promise area found under checks/"
    for area in check_areas():
        folder = CHECKS_DIR / area
        assert folder.is_dir(), f"checks/{area}.py: an area is a folder, one check per module"
        for module in sorted(folder.glob("*.py")):
            if module.name in NOT_CHECKS:
                continue
            functions = [node.name for node in _tree(module).body
                         if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")]
            assert functions == [f"check_{module.stem}"], (
                f"{module.relative_to(ROOT)} must hold exactly check_{module.stem}, holds {functions}")


def test_every_check_names_its_claims() -> None:
    declared = declared_checks()
    assert len(declared) >= 28
    assert [ident for ident, check in declared.items() if not check.claims] == []


def test_checks_import_no_io_library() -> None:
    offenders = []
    for path in _modules("checks"):
        name = _module_name(path)
        for imported in _imports(_tree(path), name, path.name == "__init__.py"):
            top = imported.split(".")[0]
            if top in IO_LIBRARIES or imported in IO_LIBRARIES:
                offenders.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert sorted(set(offenders)) == []


def test_no_module_is_over_the_size_limit() -> None:
    over = []
    for package in PACKAGES:
        for path in _modules(package):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                over.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert over == []


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for package in PACKAGES for path in _modules(package)}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for imported in _imports(_tree(path), name, path.name == "__init__.py"):
            if imported in paths and imported != name:
                graph[name].add(imported)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_auditor_never_imports_the_reference_service() -> None:
    offenders = []
    for package in ("harness", "checks"):
        for path in _modules(package):
            name = _module_name(path)
            offenders += [f"{name} imports {imported}"
                          for imported in _imports(_tree(path), name, path.name == "__init__.py")
                          if imported.split(".")[0] == "system_under_test"]
    assert sorted(set(offenders)) == []
