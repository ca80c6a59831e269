"""The package's shape, read from its source: no import cycle, no private name crossing modules,
and the core's stages importing only the stages before them.

Every import counts, at the top of a module or inside a function (a lazy import is an edge too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lipsdf_blender"

#: What each core stage may import besides the core's shared modules (errors, types, device,
#: threads): the pipeline's order (docs/architecture.md).
CORE_STAGES = {
    "inputs": set(),
    "formats": {"inputs"},
    "fields": {"inputs"},
    "training": {"inputs", "fields"},
    "surfaces": {"fields"},
    "tools": {"fields", "surfaces"},
}


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``root``."""
    out = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(root: Path, package: str) -> list[tuple[str, str, str | None]]:
    """Every import of a package module by another: ``(importer, imported module, name)``.

    ``name`` is the name taken from the imported module (``from m import name``), or None
    when a module itself is imported.
    """
    modules = module_names(root, package)
    found = []
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(mod, a.name, None) for a in node.names if a.name in modules]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_package else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target not in modules:
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    found.append((mod, sub, None) if sub in modules else (mod, target, a.name))
    return found


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_imports(found) -> list[str]:
    """``importer: module.name`` for each name with a leading underscore (not a dunder) that a
    module takes from another."""
    return [
        f"{a}: {b}.{name}"
        for a, b, name in found
        if name and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    ]


def stage_breaches(found) -> list[str]:
    """Imports from one core stage into a stage that is not before it."""
    core = f"{PACKAGE}.core."
    out = []
    for a, b, _ in found:
        if a.startswith(core) and b.startswith(core):
            sa, sb = a[len(core) :].split(".")[0], b[len(core) :].split(".")[0]
            if sa in CORE_STAGES and sb in CORE_STAGES and sa != sb:
                if sb not in CORE_STAGES[sa]:
                    out.append(f"{a} imports {b}")
    return out


def test_no_import_cycle():
    found = imports(ROOT, PACKAGE)
    assert cycles([(a, b) for a, b, _ in found]) == []


def test_no_private_name_crosses_modules():
    assert private_imports(imports(ROOT, PACKAGE)) == []


def test_core_stages_import_only_earlier_stages():
    assert stage_breaches(imports(ROOT, PACKAGE)) == []


def test_core_stages_exist():
    """The stages named above are the core's sub-packages, each with a docstring."""
    core = ROOT / PACKAGE / "core"
    subpackages = {p.parent.name for p in core.glob("*/__init__.py")}
    assert subpackages == set(CORE_STAGES)
    for name in subpackages:
        tree = ast.parse((core / name / "__init__.py").read_text())
        assert len(ast.get_docstring(tree) or "") > 80, f"core/{name}/__init__.py: no docstring"


@pytest.fixture
def knotted(tmp_path):
    """A small package with one cycle (a lazy import) and one private import."""
    pkg = tmp_path / "knot"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub.b import helper\n\n_SECRET = 1\n")
    (pkg / "sub" / "b.py").write_text("def helper():\n    from ..a import _SECRET\n")
    (pkg / "c.py").write_text("from . import a\nfrom .sub import b\nfrom .a import __doc__\n")
    return tmp_path


def test_the_checks_find_a_knot(knotted):
    found = imports(knotted, "knot")
    assert cycles([(a, b) for a, b, _ in found]) == [["knot.a", "knot.sub.b"]]
    assert private_imports(found) == ["knot.sub.b: knot.a._SECRET"]
    assert ("knot.c", "knot.a", None) in found and ("knot.c", "knot.sub.b", None) in found
