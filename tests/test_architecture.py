"""The package's shape, computed from the code: no import circles inside ``i2v/``, no backend family importing
another, a small root, one folder per family (docs/ENGINE.md describes the layout these tests keep)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "i2v"
FAMILIES = PACKAGE / "backends"
MAX_ROOT_MODULES = 10


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str, known: dict[str, Path]) -> bool:
    return known[name].name == "__init__.py"


def imported_names(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every i2v module ``name`` imports, type-only and function-local imports included: ``from a.b import c``
    imports ``a.b.c`` when that is a module, else ``a.b``."""
    package = name if is_package(name, known) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {target for target in found if target in known and target != name}


def runtime_edges(name: str, target: str, known: dict[str, Path]) -> set[str]:
    """Importing ``a.b.c`` from outside package ``a.b`` runs ``a.b``'s ``__init__`` first: that is an import too.
    From inside the package it is not (the package is already being imported)."""
    edges = {target}
    parts = target.split(".")
    for depth in range(2, len(parts)):
        package = ".".join(parts[:depth])
        if package in known and not (name == package or name.startswith(package + ".")):
            edges.add(package)
    return edges


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = imported_names(name, path, known)
        graph[name] = set().union(*(runtime_edges(name, t, known) for t in targets)) if targets else set()
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def family_of(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 3 and parts[1] == "backends" and (FAMILIES / parts[2]).is_dir():
        return parts[2]
    return None


def test_the_cycle_finder_finds_a_circle_through_a_package_init():
    graph = {"i2v.a": {"i2v.pkg"}, "i2v.pkg": {"i2v.pkg.b"}, "i2v.pkg.b": {"i2v.a"}}
    assert find_cycle(graph) == ["i2v.a", "i2v.pkg", "i2v.pkg.b", "i2v.a"]
    assert find_cycle({"i2v.a": {"i2v.b"}, "i2v.b": set()}) is None


def test_the_import_reader_sees_type_only_and_function_local_imports(tmp_path):
    known = {"i2v.x": tmp_path / "x.py", "i2v.y": tmp_path / "y.py", "i2v.z": tmp_path / "z.py"}
    known["i2v.x"].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from i2v.y import Y\n"
                              "def f():\n    from . import z\n")
    assert imported_names("i2v.x", known["i2v.x"], known) == {"i2v.y", "i2v.z"}


def test_there_is_no_import_circle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_no_backend_family_imports_another_family():
    crossings = [
        f"{name} imports {target}"
        for name, targets in import_graph().items() if family_of(name)
        for target in targets if family_of(target) and family_of(target) != family_of(name)
    ]
    assert not crossings, crossings


def test_the_root_of_the_package_holds_few_modules():
    root = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_each_backend_family_is_a_folder_of_its_own():
    loose = [path.name for path in FAMILIES.glob("*.py")
             if any(word in path.stem for word in ("i2vgen", "cogvideox", "wan", "easyanimate", "ltx", "tiny"))]
    assert not loose, f"family modules outside their folder: {loose}"
    families = sorted(path.name for path in FAMILIES.iterdir() if (path / "__init__.py").is_file())
    assert families == ["cogvideox", "easyanimate", "i2vgen_xl", "ltx2", "wan", "wan22"]


def test_every_folder_names_its_public_faces():
    silent = [str(init.relative_to(PACKAGE.parent)) for init in PACKAGE.rglob("__init__.py")
              if init.parent != PACKAGE and not ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))]
    assert not silent, f"__init__.py without a docstring saying what the folder holds: {silent}"
