"""The library's import graph has no circle: ``models``, ``modalities`` and ``pretrain`` together, module- and
function-level imports (issue 25). Layering: ``pretrain`` -> ``models``, ``modalities``; nothing imports back up.

The graph is read from the source with :mod:`ast`: an edge ``a -> b`` for every ``import b`` / ``from b import x``
/ ``from b.c import x`` (``b.c`` when it is a module, else ``b``) anywhere in ``a``, in functions too. A package's
``__init__`` running before its submodules is Python's package mechanics, not an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("models", "modalities", "pretrain")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root`` by dotted name (``pkg.sub`` for ``sub/__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def import_graph(root: Path, package: str, modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the modules of ``package`` (or the given ``modules``, e.g. of several
    packages together), module- and function-level imports."""
    modules = modules if modules is not None else module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def library_graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for package in LIBRARY:
        modules.update(module_names(REPO / package, package))
    return import_graph(REPO, "", modules)


def test_library_import_graph_has_no_circle() -> None:
    graph = library_graph()
    assert "pretrain.evaluate.report" in graph["pretrain.cli"] or "pretrain.evaluate" in graph["pretrain.cli"]
    assert "models.registry" in graph["models.converters.grover"]  # cross-package edges are seen
    assert "modalities.signals.formats.edf" in graph["modalities.signals.formats"]  # the signal-format registry
    assert "modalities.signals.preprocess" in graph["modalities.signals.windows"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_layers_do_not_import_upwards() -> None:
    """``models`` and ``modalities`` never import ``pretrain`` (the learning layer sits on top of both)."""
    graph = library_graph()
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if a.split(".")[0] in ("models", "modalities") and b.split(".")[0] == "pretrain")
    assert upward == []


def test_a_function_level_circle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from .. import other\n")
    (pkg / "other.py").write_text("import pkg.sub\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.leaf"}, "pkg.sub.leaf": {"pkg.other"},
                     "pkg.other": {"pkg.sub"}}
    assert find_cycle(graph) == ["pkg.other", "pkg.sub", "pkg.sub.leaf", "pkg.other"]
    (pkg / "other.py").write_text("import numpy\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None
