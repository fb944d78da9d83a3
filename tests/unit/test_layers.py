"""The package's import graph: no cycles, no import upwards through the layer table.

The layer table is read from ``docs/layers.md`` so that the documentation and the check
cannot disagree.  Every ``import`` / ``from ... import`` of every module of ``segsim/`` is
counted, at module level and inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "segsim"


def module_names() -> dict[str, Path]:
    """Return ``{dotted module name: file}`` for every module of the package."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """Return the package modules that ``name`` imports (and external top-level names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    out = set()
    for target in found:
        if target.split(".")[0] == "studies":
            out.add(target)
            continue
        while target and target not in modules:  # `import segsim.io.hdf5` style attributes
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def layer_table() -> dict[str, int]:
    """Return ``{module pattern: layer}`` from the table in ``docs/layers.md``."""
    table = {}
    for line in (ROOT / "docs" / "layers.md").read_text().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", line)
        if m:
            for pattern in re.findall(r"`([^`]+)`", m.group(2)):
                table[pattern] = int(m.group(1))
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    if module in table:
        return table[module]
    parts = module.split(".")
    for k in range(len(parts) - 1, 0, -1):
        pattern = ".".join(parts[:k]) + ".*"
        if pattern in table:
            return table[pattern]
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = module_names()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_the_parser_sees_known_imports(graph):
    # guards the parser itself: these edges exist in the package today
    assert "segsim.kernels.energy" in graph["segsim.kernels.kmc"]  # from-import at top
    assert "segsim.params.files" in graph["segsim.config"]
    assert "segsim.training.pipeline" in graph["segsim.cli"]  # import inside a function
    assert "segsim.species" in graph["segsim.lattice"]  # `from segsim import species`


def test_every_module_has_a_layer(graph):
    table = layer_table()
    assert len(table) >= 20, "the layer table in docs/layers.md was not found"
    missing = sorted(m for m in graph if layer_of(m, table) is None)
    assert not missing, f"modules not placed in docs/layers.md: {missing}"


def test_no_import_goes_up_a_layer(graph):
    table = layer_table()
    upward = [
        f"{src} (layer {layer_of(src, table)}) imports {dst} (layer {layer_of(dst, table)})"
        for src, dsts in graph.items()
        for dst in sorted(dsts)
        if dst.startswith("segsim") and layer_of(dst, table) > layer_of(src, table)
    ]
    assert not upward, "\n".join(upward)


def test_the_package_never_imports_the_studies(graph):
    bad = sorted(f"{s} -> {d}" for s, ds in graph.items() for d in ds if d.startswith("studies"))
    assert not bad, bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle (a list of modules, first == last) or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt in graph and state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
